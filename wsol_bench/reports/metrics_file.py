"""The short table printed at the end of ``task=evaluate``, and the summary of a labels-only file."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The summary keys that mean nothing for predictions without boxes (a devkit task-1 file)
LOCALISATION_KEYS = ("loc_error_at_k", "loc_error_ci95", "gt_known_loc_error", "gt_known_loc_error_ci95")
DEVKIT_TASK2_NOTE = ("note: cls error is of this task-2 file's labels; the devkit readme's cls figures are of its "
                     "task-1 file (evaluate.format=devkit_cls)")


def without_localisation(summary: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``summary`` for predictions without any box: the localisation figures
    (:data:`LOCALISATION_KEYS`) set to ``None`` (every image would count as mislocalised)
    and ``labels_only: true``."""
    return {**summary, **{k: None for k in LOCALISATION_KEYS}, "labels_only": True}


def format_metrics(summary: Mapping[str, Any], prediction_format: str | None = None) -> str:
    """A small fixed-width table of the devkit error rates at k = 1..5 (and GT-known).

    No localisation row for a labels-only summary (``loc_error_at_k`` ``None``, see
    :func:`without_localisation`). ``prediction_format="devkit"`` (a task-2 file) adds a
    note under the table: its classification row is of that file's labels, while the
    devkit's readme gives the classification figures of its separate task-1 file.
    """
    ks = range(1, len(summary["cls_error_at_k"]) + 1)
    missing = summary.get("n_missing", 0)
    lines = [
        f"images: {summary['n_images']}" + (f" ({missing} without predictions)" if missing else ""),
        "k              " + "".join(f"{k:>8d}" for k in ks),
    ]
    if summary.get("loc_error_at_k") is not None:
        lines.append("loc error      " + "".join(f"{e:8.4f}" for e in summary["loc_error_at_k"]))
    lines.append("cls error      " + "".join(f"{e:8.4f}" for e in summary["cls_error_at_k"]))
    if summary.get("loc_error_at_k") is None:
        lines.append("labels only (no boxes): no localisation error")
    if summary.get("gt_known_loc_error") is not None:
        lines.append(f"GT-known loc error: {summary['gt_known_loc_error']:.4f}")
    if prediction_format == "devkit":
        lines.append(DEVKIT_TASK2_NOTE)
    return "\n".join(lines)
