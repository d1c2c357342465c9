"""Figures of an image's class saliency maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from wsol_bench.figures import new_figure, save_figure
from wsol_bench.frames import map_to_original
from wsol_bench.saliency import SaliencyResult


def _class_name(class_names: Sequence[str], result: SaliencyResult, k: int) -> str:
    if len(class_names) == len(result.logits):
        return str(class_names[int(result.classes[k])])
    if len(class_names) == len(result.classes):
        return str(class_names[k])
    raise ValueError(
        f"class_names has {len(class_names)} names: expected one per class index ({len(result.logits)}) "
        f"or one per map ({len(result.classes)})"
    )


def save_saliency_figure(
    path: str | Path,
    image: np.ndarray,
    result: SaliencyResult,
    class_names: Sequence[str],
    panel_inches: float = 2.6,
    dpi: int = 100,
) -> Path:
    """Save a PNG: the image, then each class's map titled with its name and mean logit.

    ``image``: ``H x W x 3`` uint8 RGB, normally the resized frame of the maps (maps are
    resized to the image otherwise). ``class_names[c]``: name of class index ``c``
    (sorted-WNID order); a list with one name per map (``len(result.classes)``) is also
    accepted. Each map is shown on its own scale (black 0, white its maximum).
    """
    k = len(result.classes)
    h, w = image.shape[:2]
    fig = new_figure(panel_inches * (k + 1), panel_inches * h / w + 0.6, dpi)
    axes = fig.subplots(1, k + 1, squeeze=False)[0]
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=8)
    for i in range(k):
        m = result.maps[i]
        if m.shape != (h, w):
            m = map_to_original(m, (h, w))
        vmax = float(m.max()) if m.size and m.max() > 0 else 1.0
        axes[i + 1].imshow(m, cmap="gray", vmin=0.0, vmax=vmax)
        c = int(result.classes[i])
        axes[i + 1].set_title(f"{_class_name(class_names, result, i)}\nlogit {result.logits[c]:.2f}", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)
