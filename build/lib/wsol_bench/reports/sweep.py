"""Collect a Hydra multirun folder (one job per sub-folder) into one table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

COUNT_COLUMNS = ("n_images", "n_failed", "n_fallback_boxes")


def metric_columns(metrics: dict) -> dict:
    """A run's sweep-table columns: the headline figures its evaluators chose (``table`` in
    ``metrics.json``; intervals as ``[lo, hi]`` strings), then its counts."""
    row = {k: (_interval(v) if isinstance(v, list) else v) for k, v in metrics.get("table", {}).items()}
    row.update({k: metrics.get(k) for k in COUNT_COLUMNS})
    return row


def _interval(bounds: list[float] | None) -> str | None:
    return None if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def collect_sweep(sweep_dir: str | Path) -> pd.DataFrame:
    """One row per job of ``sweep_dir``: its overrides, then its metrics.

    A job without ``metrics.json`` (failed or still running) is kept with a ``status``
    saying so, never dropped.
    """
    sweep_dir = Path(sweep_dir)
    jobs = sorted((p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()),
                  key=lambda p: (len(p.name), p.name))
    if not jobs:
        raise FileNotFoundError(f"{sweep_dir}: no Hydra job folders (*/.hydra/overrides.yaml)")
    rows = []
    override_keys: dict[str, None] = {}
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        row: dict = {"job": job.name}
        for item in overrides:
            key, _, value = str(item).partition("=")
            row[key.lstrip("+~")] = yaml.safe_load(value) if value else value
            override_keys[key.lstrip("+~")] = None
        metrics_path = job / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            row.update(metric_columns(metrics))
            row["status"] = "ok"
        else:
            row["status"] = "no metrics.json"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["override_keys"] = list(override_keys)
    return table


def swept_keys(table: pd.DataFrame) -> list[str]:
    """Override columns whose value differs between jobs."""
    keys = table.attrs.get("override_keys", [])
    return [c for c in keys if c in table.columns and table[c].astype(str).nunique() > 1]


def plot_sweep(table: pd.DataFrame, x: str, path: Path, metrics: tuple[str, ...] = ("top5_loc_error", "gt_known_loc_error")) -> None:
    """Error against ``x``; one line per combination of the other swept keys."""
    from wsol_bench.figures import new_figure, save_figure

    metrics = tuple(m for m in metrics if m in table.columns)
    others = [k for k in swept_keys(table) if k != x]
    fig = new_figure(5 * len(metrics), 4, 90)
    axes = fig.subplots(1, len(metrics), squeeze=False)
    done = table[table.status == "ok"]
    for ax, metric in zip(axes[0], metrics):
        groups = done.groupby(others) if others else [((), done)]
        for key, g in groups:
            g = g.sort_values(x)
            label = ", ".join(f"{k}={v}" for k, v in zip(others, key if isinstance(key, tuple) else (key,)))
            numeric = pd.api.types.is_numeric_dtype(g[x])
            ax.plot(g[x] if numeric else g[x].astype(str), g[metric], marker="o", linestyle="-" if numeric else "none",
                    label=label or None)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
