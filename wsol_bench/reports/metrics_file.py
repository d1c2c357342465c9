"""``metrics.json`` and the short table printed at the end of a run."""

from __future__ import annotations

import json
from pathlib import Path

from wsol_bench.metrics.localisation import LocalisationMetrics


def write_metrics(path: str | Path, metrics: LocalisationMetrics, **extra: object) -> dict:
    """Write ``metrics.json`` (``n_images``, ``loc_error_at_k``, ``cls_error_at_k``, ... + extra)."""
    data = {**metrics.to_dict(), **extra}
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return data


def format_metrics(metrics: LocalisationMetrics) -> str:
    """A small fixed-width table of the error rates at k = 1..5."""
    ks = range(1, len(metrics.loc_error_at_k) + 1)
    lines = [
        f"images: {metrics.n_images}" + (f" ({metrics.n_missing} without predictions)" if metrics.n_missing else ""),
        "k              " + "".join(f"{k:>8d}" for k in ks),
        "loc error      " + "".join(f"{e:8.4f}" for e in metrics.loc_error_at_k),
        "cls error      " + "".join(f"{e:8.4f}" for e in metrics.cls_error_at_k),
    ]
    if metrics.gt_known_loc_error is not None:
        lines.append(f"GT-known loc error: {metrics.gt_known_loc_error:.4f}")
    return "\n".join(lines)
