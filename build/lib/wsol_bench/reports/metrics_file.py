"""The short table printed at the end of ``task=evaluate``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def format_metrics(summary: Mapping[str, Any]) -> str:
    """A small fixed-width table of the devkit error rates at k = 1..5 (and GT-known)."""
    ks = range(1, len(summary["loc_error_at_k"]) + 1)
    missing = summary.get("n_missing", 0)
    lines = [
        f"images: {summary['n_images']}" + (f" ({missing} without predictions)" if missing else ""),
        "k              " + "".join(f"{k:>8d}" for k in ks),
        "loc error      " + "".join(f"{e:8.4f}" for e in summary["loc_error_at_k"]),
        "cls error      " + "".join(f"{e:8.4f}" for e in summary["cls_error_at_k"]),
    ]
    if summary.get("gt_known_loc_error") is not None:
        lines.append(f"GT-known loc error: {summary['gt_known_loc_error']:.4f}")
    return "\n".join(lines)
