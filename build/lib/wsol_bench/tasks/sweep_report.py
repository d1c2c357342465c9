"""``task=sweep_report sweep.dir=MULTIRUN_DIR``: one table (CSV + Markdown) and a plot per sweep."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from wsol_bench.reports.sweep import collect_sweep, plot_sweep, swept_keys
from wsol_bench.tasks.factory import section


def run(cfg: DictConfig) -> int:
    """Writes ``sweep.csv``, ``sweep.md`` and ``sweep.png`` into ``sweep.dir``; returns the job count."""
    sweep = section(cfg, "sweep")
    if not sweep.get("dir"):
        raise ValueError("task=sweep_report needs sweep.dir=<a Hydra multirun folder>")
    directory = Path(sweep["dir"])
    table = collect_sweep(directory)
    table.to_csv(directory / "sweep.csv", index=False)
    keys = swept_keys(table)
    shown = table[["job", *keys, *[c for c in table.columns if c not in ("job", "status", *table.attrs["override_keys"])],
                   "status"]]
    (directory / "sweep.md").write_text(shown.to_markdown(index=False, floatfmt=".3f") + "\n", encoding="utf-8")
    x = sweep.get("x") or (keys[0] if keys else None)
    if x is not None:
        plot_sweep(table, x, directory / "sweep.png")
    print(shown.to_string(index=False))
    return len(table)
