"""Collect a Hydra multirun folder (one job per sub-folder) into one table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

METRIC_COLUMNS = {
    "top1_loc_error": lambda m: m["loc_error_at_k"][0],
    "top5_loc_error": lambda m: m["loc_error_at_k"][-1],
    "gt_known_loc_error": lambda m: m.get("gt_known_loc_error"),
    "top5_cls_error": lambda m: m["cls_error_at_k"][-1],
    "top1_loc_ci95": lambda m: _interval(m["loc_error_ci95"][0]),
    "top5_loc_ci95": lambda m: _interval(m["loc_error_ci95"][-1]),
    "gt_known_ci95": lambda m: _interval(m.get("gt_known_loc_error_ci95")),
    "top5_cls_ci95": lambda m: _interval(m["cls_error_ci95"][-1]),
    "n_images": lambda m: m["n_images"],
    "n_failed": lambda m: m.get("n_failed"),
    "n_fallback_boxes": lambda m: m.get("n_fallback_boxes"),
}


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
    for job in jobs:
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
        row: dict = {"job": job.name}
        for item in overrides:
            key, _, value = str(item).partition("=")
            row[key.lstrip("+~")] = yaml.safe_load(value) if value else value
        metrics_path = job / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            row.update({name: get(metrics) for name, get in METRIC_COLUMNS.items()})
            row["status"] = "ok"
        else:
            row["status"] = "no metrics.json"
        rows.append(row)
    return pd.DataFrame(rows)


def swept_keys(table: pd.DataFrame) -> list[str]:
    """Override columns whose value differs between jobs."""
    fixed = {"job", "status", *METRIC_COLUMNS}
    return [c for c in table.columns if c not in fixed and table[c].astype(str).nunique() > 1]


def plot_sweep(table: pd.DataFrame, x: str, path: Path, metrics: tuple[str, ...] = ("top5_loc_error", "gt_known_loc_error")) -> None:
    """Error against ``x``; one line per combination of the other swept keys."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [k for k in swept_keys(table) if k != x]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
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
    fig.savefig(path, dpi=90)
    plt.close(fig)
