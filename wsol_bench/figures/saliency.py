"""Figures of an image's class saliency maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from wsol_bench.figures import save_figure
from wsol_bench.figures.layout import Panel, grey_map, panel_grid
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
    accepted. Each map is shown on its own scale (black 0, white its maximum); captions
    are wrapped to the panel (:func:`wsol_bench.figures.layout.panel_grid`).
    """
    h, w = image.shape[:2]
    panels = [Panel(image, "image")]
    for i in range(len(result.classes)):
        m = result.maps[i]
        if m.shape != (h, w):
            m = map_to_original(m, (h, w))
        c = int(result.classes[i])
        panels.append(Panel(grey_map(m, 100.0), f"{_class_name(class_names, result, i)}\nlogit {result.logits[c]:.2f}"))
    fig = panel_grid([panels], cell_inches=panel_inches, dpi=dpi).figure
    return save_figure(fig, path)
