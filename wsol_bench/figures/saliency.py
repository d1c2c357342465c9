"""Figures of an image's class saliency maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from wsol_bench.figures import save_figure
from wsol_bench.figures.layout import Panel, colour_map, panel_grid
from wsol_bench.figures.palette import SALIENCY_CMAP
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


def saliency_figure(
    image: np.ndarray,
    result: SaliencyResult,
    class_names: Sequence[str],
    panel_inches: float = 2.6,
    dpi: int = 100,
    percentile: float = 99.0,
    cmap: str = SALIENCY_CMAP,
) -> Figure:
    """The image, then each class's map titled with its name and mean logit.

    ``image``: ``H x W x 3`` uint8 RGB, normally the resized frame of the maps (maps are
    resized to the image otherwise). ``class_names[c]``: name of class index ``c``
    (sorted-WNID order); a list with one name per map (``len(result.classes)``) is also
    accepted. Each map is shown on its own scale in the perceptually uniform colour map
    ``cmap``: its first colour (black) is 0, its last the map's ``percentile``-th
    percentile, brighter pixels clipped (:func:`~wsol_bench.figures.layout.colour_map`), so
    the few very bright pixels of a gradient map do not darken the rest; the figure's title
    says so. Captions are wrapped to the panel (:func:`wsol_bench.figures.layout.panel_grid`).
    """
    h, w = image.shape[:2]
    panels = [Panel(image, "image")]
    for i in range(len(result.classes)):
        m = result.maps[i]
        if m.shape != (h, w):
            m = map_to_original(m, (h, w))
        c = int(result.classes[i])
        panels.append(Panel(colour_map(m, percentile, cmap),
                            f"{_class_name(class_names, result, i)}\nlogit {result.logits[c]:.2f}"))
    ordinal = f"{percentile:g}th percentile" if percentile < 100 else "maximum"
    title = f"maps ({cmap} colour map): each stretched from 0 (black) to its {ordinal}, brighter pixels clipped"
    return panel_grid([panels], title=title, cell_inches=panel_inches, dpi=dpi).figure


def save_saliency_figure(
    path: str | Path,
    image: np.ndarray,
    result: SaliencyResult,
    class_names: Sequence[str],
    panel_inches: float = 2.6,
    dpi: int = 100,
    percentile: float = 99.0,
) -> Path:
    """:func:`saliency_figure` written as a PNG at ``path`` (``figure size x dpi`` pixels)."""
    return save_figure(saliency_figure(image, result, class_names, panel_inches, dpi, percentile), path)
