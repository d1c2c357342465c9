"""Collect runs into one table (one row per run) and plot their metrics with 95 % intervals.

Runs are Hydra output folders (``.hydra/`` beside ``metrics.json``): the jobs of a
multirun folder, a folder of single runs such as ``outputs/localise``, a run folder
itself, or any list of those.

Settings columns: when every run is a multirun job (its parent folder holds Hydra's
``multirun.yaml``), each job's overrides (``.hydra/overrides.yaml``); otherwise the keys
of ``.hydra/config.yaml`` whose values differ between the runs (dotted, e.g.
``segmentation.fg_quantile``). Either way without the bookkeeping keys
(:data:`BOOKKEEPING_KEYS`: figures, caches, workers, progress bars, Hydra's own settings,
which do not change a run's results). ``table.attrs['setting_keys']`` lists the settings,
``table.attrs['settings_from']`` says which (``'overrides'`` or ``'config'``),
``table.attrs['bookkeeping_keys']`` the bookkeeping keys that differed and were left out.
The plot's default x axis is :func:`default_x`.

Interval naming rule: the 95 % interval of metric ``<name>_error`` is in column
``<name>_ci95``, of any other metric ``<metric>_ci95`` (:func:`interval_column`), as a
``"[lo, hi]"`` string, with its numeric bounds in ``<name>_ci95_lo`` and
``<name>_ci95_hi``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

COUNT_COLUMNS = ("n_images", "n_failed", "n_fallback_boxes")
# Settings that do not change a run's results (what is drawn or saved beside them, caching,
# batching, parallelism, progress output, Hydra's own settings, the engine's tuning), so runs
# are not compared by them. ``section.*``: every key of that section (``hydra/launcher``
# overrides included).
BOOKKEEPING_KEYS = (
    "run.figures", "run.save_maps", "run.progress", "run.resume", "run.processes",
    "saliency.cache", "saliency.cache_dir", "saliency.batch_images",
    "segmentation.workers",
    "dataset.num_workers", "dataset.demo_dir",
    "train.progress", "train.log_seconds", "train.num_workers", "train.checkpoint_dir", "train.resume",
    "hydra.*", "engine.*", "sweep.*",
)
INTERVAL_SUFFIX = "_ci95"
BOUND_SUFFIXES = ("_lo", "_hi")


def _interval(bounds: Sequence[float] | None) -> str | None:
    return None if bounds is None else f"[{bounds[0]:.3f}, {bounds[1]:.3f}]"


def metric_columns(metrics: dict) -> dict:
    """A run's table columns: the headline figures its evaluators chose (``table`` in
    ``metrics.json``; an interval ``[lo, hi]`` becomes a ``"[lo, hi]"`` string column and
    numeric ``<column>_lo`` / ``<column>_hi`` columns), then its counts."""
    row: dict[str, Any] = {}
    for key, value in metrics.get("table", {}).items():
        if isinstance(value, (list, tuple)) and len(value) == 2:
            row[key] = _interval(value)
            row[key + "_lo"], row[key + "_hi"] = float(value[0]), float(value[1])
        else:
            row[key] = value
    row.update({k: metrics.get(k) for k in COUNT_COLUMNS})
    return row


def interval_column(metric: str, columns: Sequence[str] | None = None) -> str | None:
    """The interval column of ``metric`` by the naming rule (see the module docstring):
    ``<metric>_ci95`` if among ``columns``, else ``<metric less _error>_ci95``; with no
    ``columns``, the rule's name. ``None`` if neither is among ``columns``."""
    candidates = [metric + INTERVAL_SUFFIX]
    if metric.endswith("_error"):
        candidates.append(metric[: -len("_error")] + INTERVAL_SUFFIX)
    if columns is None:
        return candidates[-1]
    return next((c for c in candidates if c in columns), None)


_BOUNDS = re.compile(r"^\s*\[\s*([^,\s]+)\s*,\s*([^\]\s]+)\s*\]\s*$")


def _parse_interval(text: Any) -> tuple[float, float]:
    match = _BOUNDS.match(str(text)) if isinstance(text, str) else None
    if match is None:
        return (np.nan, np.nan)
    return float(match.group(1)), float(match.group(2))


def interval_bounds(table: pd.DataFrame, metric: str) -> tuple[pd.Series, pd.Series] | None:
    """Numeric ``(lo, hi)`` of ``metric``'s 95 % interval per row (NaN where unknown):
    from the ``_lo``/``_hi`` columns, or parsed from the ``"[lo, hi]"`` strings (a table
    read back from an older CSV); ``None`` when the table has no interval for it."""
    column = interval_column(metric, list(table.columns))
    if column is None:
        return None
    lo_col, hi_col = column + "_lo", column + "_hi"
    if lo_col in table.columns and hi_col in table.columns:
        return pd.to_numeric(table[lo_col], errors="coerce"), pd.to_numeric(table[hi_col], errors="coerce")
    parsed = [_parse_interval(v) for v in table[column]]
    return (pd.Series([p[0] for p in parsed], index=table.index, dtype=float),
            pd.Series([p[1] for p in parsed], index=table.index, dtype=float))


def is_bookkeeping(key: str) -> bool:
    """Whether the setting ``key`` (dotted, or a ``group/option`` override) is one of :data:`BOOKKEEPING_KEYS`."""
    key = key.lstrip("+~").replace("/", ".")
    for entry in BOOKKEEPING_KEYS:
        if entry.endswith(".*"):
            if key == entry[:-2] or key.startswith(entry[:-1]):
                return True
        elif key == entry:
            return True
    return False


def _is_run(folder: Path) -> bool:
    hydra = folder / ".hydra"
    return (hydra / "overrides.yaml").is_file() or (hydra / "config.yaml").is_file()


def run_folders(source: str | Path) -> list[Path]:
    """``source`` itself if it is a run folder, else its run sub-folders (multirun jobs in
    job-number order, other runs by name, i.e. by date for Hydra's timestamped folders)."""
    source = Path(source)
    if _is_run(source):
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such folder")
    return sorted((p for p in source.iterdir() if p.is_dir() and _is_run(p)), key=lambda p: (len(p.name), p.name))


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: "{}"}
    value = json.dumps(node) if isinstance(node, list) else node
    return {prefix[:-1]: value}


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def collect_sweep(sources: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """One row per run of ``sources`` (one folder or a list, see :func:`run_folders`): the
    ``job`` (folder name; the path from the folders' common parent when several sources
    are given), its settings (see the module docstring), then its metrics.

    A run without ``metrics.json`` (failed or still running) is kept with a ``status``
    saying so, never dropped.
    """
    many = not isinstance(sources, (str, Path))
    folders = [Path(sources)] if isinstance(sources, (str, Path)) else [Path(s) for s in sources]
    jobs = [job for folder in folders for job in run_folders(folder)]
    if not jobs:
        raise FileNotFoundError(f"{', '.join(map(str, folders))}: no Hydra run folders (*/.hydra/)")
    if len({j.resolve() for j in jobs}) != len(jobs):
        raise ValueError("a run folder is listed twice")
    common = Path(os.path.commonpath([str(j.resolve()) for j in jobs])) if many else None
    from_overrides = all((j.parent / "multirun.yaml").is_file() for j in jobs)
    settings: list[dict[str, Any]] = []
    for job in jobs:
        if from_overrides:
            row: dict[str, Any] = {}
            for item in _read_yaml(job / ".hydra" / "overrides.yaml") or []:
                key, _, value = str(item).partition("=")
                row[key.lstrip("+~")] = yaml.safe_load(value) if value else value
            settings.append(row)
        else:
            settings.append(_flatten(_read_yaml(job / ".hydra" / "config.yaml") or {}))
    keys = list(dict.fromkeys(k for s in settings for k in s))
    if not from_overrides:  # only the settings that differ between runs
        keys = [k for k in keys if len({json.dumps(s.get(k), sort_keys=True, default=str) for s in settings}) > 1]
    bookkeeping = [k for k in keys if is_bookkeeping(k)]
    keys = [k for k in keys if not is_bookkeeping(k)]
    rows = []
    for job, setting in zip(jobs, settings):
        relative = str(job.resolve().relative_to(common)) if common is not None else "."
        name = job.name if relative == "." else relative
        row = {"job": name, **{k: setting.get(k) for k in keys}}
        metrics_path = job / "metrics.json"
        if metrics_path.is_file():
            row.update(metric_columns(json.loads(metrics_path.read_text())))
            row["status"] = "ok"
        else:
            row["status"] = "no metrics.json"
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["setting_keys"] = keys
    table.attrs["settings_from"] = "overrides" if from_overrides else "config"
    table.attrs["bookkeeping_keys"] = bookkeeping
    return table


def swept_keys(table: pd.DataFrame) -> list[str]:
    """Settings columns whose value differs between runs (never a bookkeeping key)."""
    keys = table.attrs.get("setting_keys", [])
    return [c for c in keys if c in table.columns and table[c].astype(str).nunique() > 1 and not is_bookkeeping(c)]


def _is_numeric(values: pd.Series) -> bool:
    values = values.dropna()
    if values.empty or pd.api.types.is_bool_dtype(values) or any(isinstance(v, bool) for v in values):
        return False
    return bool(pd.to_numeric(values, errors="coerce").notna().all())


def default_x(table: pd.DataFrame) -> str | None:
    """The setting to plot runs against: among :func:`swept_keys`, a numeric setting of the
    method (any section but ``dataset``) first, then any setting of the method, then the
    evaluated data's (``dataset.limit``, ...), each in table order; ``None`` when no setting differs."""
    keys = swept_keys(table)
    ranked = sorted(range(len(keys)), key=lambda i: (keys[i].startswith("dataset"), not _is_numeric(table[keys[i]]), i))
    return keys[ranked[0]] if ranked else None


def shown_columns(table: pd.DataFrame) -> list[str]:
    """The columns of the Markdown table: job, swept settings, metrics (intervals as
    ``"[lo, hi]"`` only), status."""
    settings = set(table.attrs.get("setting_keys", []))
    bounds = {c + s for c in table.columns for s in BOUND_SUFFIXES if c.endswith(INTERVAL_SUFFIX)}
    rest = [c for c in table.columns if c not in ("job", "status") and c not in settings and c not in bounds]
    return ["job", *swept_keys(table), *rest, "status"]


def plot_sweep(
    table: pd.DataFrame, x: str, path: Path,
    metrics: tuple[str, ...] = ("top5_loc_error", "gt_known_loc_error"),
) -> Figure:
    """One panel per metric: the metric against ``x`` with its 95 % interval as error bars
    (see :func:`interval_bounds`), one line per combination of the other swept settings,
    told apart by marker and line style as well as colour (the palette's
    :data:`~wsol_bench.figures.palette.SERIES_COLOURS`). Lines are nudged sideways (a few %
    of the x spacing) so their bars do not overlap; a categorical ``x`` gets one slot per
    value, lines side by side within it. The legend (one for the figure) sits below the
    panels and the PNG is cropped to hold everything (``bbox_inches="tight"``), so neither
    covers a panel nor is cut off. Writes the PNG at ``path`` and returns the figure."""
    from wsol_bench.figures import new_figure, save_figure
    from wsol_bench.figures.palette import SERIES_COLOURS

    done = table[table.status == "ok"]
    metrics = tuple(m for m in metrics if m in done.columns and pd.to_numeric(done[m], errors="coerce").notna().any())
    if not metrics:
        raise ValueError(f"no finished run has any of the metrics to plot ({', '.join(metrics) or 'none given'})")
    others = [k for k in swept_keys(table) if k != x]
    numeric = pd.api.types.is_numeric_dtype(done[x])
    categories = list(dict.fromkeys(done[x].astype(str))) if not numeric else []
    fig = new_figure(5 * len(metrics), 4, 90, layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    groups = list(done.groupby(others, dropna=False)) if others else [((), done)]
    distinct = np.unique(pd.to_numeric(done[x], errors="coerce").dropna()) if numeric else np.array([])
    spacing = float(np.diff(distinct).min()) if distinct.size > 1 else 1.0
    markers, styles = "osD^vP*Xph", ("-", "--", ":", "-.")
    for ax, metric in zip(axes, metrics):
        for n, (key, g) in enumerate(groups):
            g = g.sort_values(x) if numeric else g
            y = pd.to_numeric(g[metric], errors="coerce").to_numpy(float)
            bounds = interval_bounds(g, metric)
            if bounds is None:
                yerr = None
            else:
                lo, hi = (b.to_numpy(float) for b in bounds)
                yerr = np.nan_to_num(np.clip(np.vstack([y - lo, hi - y]), 0.0, None), nan=0.0)
            if numeric:  # lines nudged apart by a few % of the x spacing so that bars stay apart
                xs = g[x].to_numpy(float) + (n - (len(groups) - 1) / 2) * 0.04 * spacing
            else:
                dodge = (n - (len(groups) - 1) / 2) * min(0.6 / max(len(groups), 1), 0.15)
                xs = np.array([categories.index(v) for v in g[x].astype(str)], float) + dodge
            keys = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{k}={v}" for k, v in zip(others, keys)) or None
            ax.errorbar(xs, y, yerr=yerr, marker=markers[n % len(markers)], capsize=3,
                        color=SERIES_COLOURS[n % len(SERIES_COLOURS)],
                        linestyle=styles[n // len(markers) % len(styles)] if numeric else "none", label=label)
        if not numeric:
            ax.set_xticks(range(len(categories)), categories, rotation=20 if len(categories) > 3 else 0)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (bars: 95% interval)", fontsize=9)
        ax.grid(alpha=0.3)
    if others:
        handles, labels = axes[0].get_legend_handles_labels()
        longest = max(len(label) for label in labels)
        fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=7,  # below the panels
                   ncols=1 if longest > 70 else 2 if longest > 35 else 3, frameon=False)
    save_figure(fig, path, tight=True)
    return fig
