"""wsol_bench."""
