"""Reports: metrics files, tables, per-class breakdowns, figures."""
