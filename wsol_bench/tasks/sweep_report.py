"""``task=sweep_report``: one table (CSV + Markdown) and a plot over runs.

``sweep.dir=DIR``: a Hydra multirun folder, a folder of single runs (``outputs/localise``)
or one run folder; the outputs go into ``DIR``. ``sweep.dirs=[DIR1,DIR2,...]``: any of
those, together; the outputs go into this task's own run folder. See
:mod:`wsol_bench.reports.sweep` for the columns.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from wsol_bench.reports.sweep import (
    collect_sweep,
    default_x,
    plot_sweep,
    shown_columns,
    swept_keys,
)
from wsol_bench.tasks import run_dir
from wsol_bench.tasks.factory import section


def run(cfg: DictConfig) -> int:
    """Writes ``sweep.csv``, ``sweep.md`` and ``sweep.png``; returns the run count."""
    sweep = section(cfg, "sweep")
    if sweep.get("dirs"):
        if sweep.get("dir"):
            raise ValueError("give sweep.dir or sweep.dirs, not both")
        source: str | list[str] = [str(d) for d in sweep["dirs"]]
        out = run_dir("sweep_report")
    elif sweep.get("dir"):
        source = str(sweep["dir"])
        out = Path(source)
    else:
        raise ValueError("task=sweep_report needs sweep.dir=<a multirun folder, a folder of runs or a run> "
                         "or sweep.dirs=[RUN_OR_FOLDER,...]")
    table = collect_sweep(source)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sweep.csv", index=False)
    shown = table[shown_columns(table)]
    (out / "sweep.md").write_text(shown.to_markdown(index=False, floatfmt=".3f") + "\n", encoding="utf-8")
    keys = swept_keys(table)
    x = sweep.get("x") or default_x(table)
    if x is not None and (table.status == "ok").any():
        if x not in table.columns:
            raise ValueError(f"sweep.x={x!r} is not a setting of these runs (swept: {', '.join(keys) or 'none'})")
        plot_sweep(table, x, out / "sweep.png")
    print(shown.to_string(index=False))
    print(f"sweep report of {len(table)} runs written to {out}")
    return len(table)
