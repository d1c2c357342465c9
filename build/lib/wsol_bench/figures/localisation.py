"""Figures of a localisation run: image with boxes, saliency map, object mask (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.patches import Rectangle

from wsol_bench.boxes import Box
from wsol_bench.figures import new_figure, save_figure


def _draw_box(ax, box: Sequence[int], colour: str, label: str | None = None, width: float = 2.0) -> None:
    x0, y0, x1, y1 = box
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec=colour, lw=width))
    if label:
        ax.text(x0, y0, label, color="white", fontsize=7, va="bottom", bbox=dict(fc=colour, ec="none", pad=1))


def save_localisation_figure(
    path: Path,
    image: np.ndarray,
    gt_boxes: Sequence[Box],
    predicted: Sequence[tuple[str, Sequence[int]]],
    saliency: np.ndarray,
    mask: np.ndarray | None,
    title: str,
) -> None:
    """Three panels: the original image with ground truth (green) and predicted boxes
    (top-1 red, others orange), the top-1 saliency map and its object mask (resized frame)."""
    fig = new_figure(12, 4)
    axes = fig.subplots(1, 3)
    axes[0].imshow(image)
    for b in gt_boxes:
        _draw_box(axes[0], b.coords, "limegreen", f"GT {b.synset}")
    for rank, (name, box) in reversed(list(enumerate(predicted, start=1))):
        _draw_box(axes[0], box, "red" if rank == 1 else "orange", f"{rank}: {name}", 2.5 if rank == 1 else 1.0)
    axes[0].set_title(title, fontsize=9)
    finite = saliency[np.isfinite(saliency)]
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    axes[1].imshow(saliency, cmap="gray", vmin=0.0, vmax=vmax or 1.0)
    axes[1].set_title("saliency (top-1 class, clipped at its 99th percentile)", fontsize=9)
    if mask is not None:
        axes[2].imshow(mask, cmap="gray")
        axes[2].set_title("object mask (top-1 class)", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path, dpi=80)
