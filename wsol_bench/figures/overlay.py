"""One call for the picture researchers look at first: a saliency map as a coloured heatmap
over its image, with boxes and their labels (as captum's ``visualize_image_attr`` and
pytorch-grad-cam's ``show_cam_on_image`` do for the map alone).

The map is stretched to its own 99th percentile (clipped above it: gradient maps are dark
otherwise), coloured with :data:`~wsol_bench.figures.palette.SALIENCY_CMAP` and blended over
the image with weight ``alpha``; boxes are 0-based inclusive pixels of the image, drawn in
the colour-blind-safe palette with distinct line styles, each with its label.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from wsol_bench.boxes import Box
from wsol_bench.figures import new_figure
from wsol_bench.figures.palette import SALIENCY_CMAP, SERIES_COLOURS, text_colour_on
from wsol_bench.frames import map_to_original

LINESTYLES = ("-", "--", "-.", ":")


def heatmap_overlay(image: np.ndarray, saliency: np.ndarray, alpha: float = 0.5,
                    percentile: float = 99.0) -> np.ndarray:
    """``H x W x 3`` uint8: the map (any frame; resized to the image's) stretched to its
    ``percentile``, coloured, blended over ``image`` (``H x W x 3`` uint8 RGB)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}: must be in [0, 1]")
    heat = map_to_original(np.nan_to_num(np.asarray(saliency, dtype=np.float32)), image.shape[:2])
    top = float(np.percentile(heat, percentile)) if heat.size else 0.0
    scaled = np.clip(heat / top, 0.0, 1.0) if top > 0 else np.zeros_like(heat)
    colours = colormaps[SALIENCY_CMAP](scaled)[..., :3]
    blended = (1.0 - alpha) * image.astype(np.float32) / 255.0 + alpha * colours
    return np.clip(np.round(blended * 255.0), 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, saliency: np.ndarray | None = None, boxes: Sequence[Box] = (),
            labels: Sequence[str] | None = None, title: str | None = None, alpha: float = 0.5,
            width_inches: float = 6.0, dpi: int = 100) -> Figure:
    """A figure of ``image`` (``H x W x 3`` uint8 RGB) under its ``saliency`` map (any frame,
    or none) with ``boxes`` (image pixels) labelled ``labels`` (default: each box's synset).
    Save it with :func:`wsol_bench.figures.save_figure` or show it in a notebook."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image: expected H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")
    labels = list(labels) if labels is not None else [b.synset or "" for b in boxes]
    if len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes")
    h, w = image.shape[:2]
    fig = new_figure(width_inches, width_inches * h / w + (0.4 if title else 0.0), dpi)
    ax = fig.add_axes((0.0, 0.0, 1.0, h * width_inches / w / fig.get_figheight()))
    ax.imshow(image if saliency is None else heatmap_overlay(image, saliency, alpha), interpolation="nearest")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    for k, (box, label) in enumerate(zip(boxes, labels)):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        x0, y0, x1, y1 = box.clipped((h, w))
        ax.add_patch(_rectangle(x0 - 0.5, y0 - 0.5, x1 - x0 + 1, y1 - y0 + 1, colour, LINESTYLES[k % len(LINESTYLES)]))
        if label:
            ax.text(x0, y0, f" {label} ", color=text_colour_on(colour), fontsize=9, va="bottom", ha="left",
                    bbox={"facecolor": colour, "edgecolor": "none", "pad": 1.0}, clip_on=True)
    if title:
        fig.suptitle(title, y=1.0 - 0.05 / fig.get_figheight(), va="top", fontsize=10)
    return fig


def _rectangle(x: float, y: float, w: float, h: float, colour: str, linestyle: str):
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, h, fill=False, edgecolor=colour, linewidth=2.0, linestyle=linestyle)


__all__ = ["heatmap_overlay", "overlay"]
