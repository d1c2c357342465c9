"""Saliency methods side by side: one row per image, the image then one column per method.

Inputs are plain arrays from any runs: ``images[i]`` (``H x W x 3`` uint8 RGB) and
``maps[i][method]`` (``H' x W'`` float, >= 0), each map in any frame of its image: a map
of another size is resized (bilinear, :func:`wsol_bench.frames.resize_to`) to the image.
Each map is grey on its own scale (black 0, white its ``percentile``-th percentile, see
:func:`wsol_bench.figures.layout.grey_map`), so the figure compares where methods look,
not their magnitudes. A missing map (``None`` or an absent key) leaves its cell empty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from wsol_bench.figures.layout import Panel, check_image, grey_map, panel_grid
from wsol_bench.frames import resize_to

MapsOfImage = Mapping[str, np.ndarray | None] | Sequence[np.ndarray | None]
"""One image's maps: by method name, or a sequence in the order of ``methods``."""


def _map_of(maps: MapsOfImage, methods: Sequence[str], j: int) -> np.ndarray | None:
    if isinstance(maps, Mapping):
        return maps.get(methods[j])
    if len(maps) != len(methods):
        raise ValueError(f"{len(maps)} maps for {len(methods)} methods")
    return maps[j]


def compare_figure(
    images: Sequence[np.ndarray],
    methods: Sequence[str],
    maps: Sequence[MapsOfImage],
    captions: Sequence[str] | None = None,
    percentile: float = 99.0,
    cell_inches: float = 2.0,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """``len(images)`` rows of ``1 + len(methods)`` panels: the image, then each method's map.

    Column titles are ``'image'`` and the method names; ``captions[i]`` (e.g. the class
    the maps are of) titles row ``i``.
    """
    if not images:
        raise ValueError("compare_figure needs at least one image")
    if len(maps) != len(images):
        raise ValueError(f"{len(maps)} map sets for {len(images)} images")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} images")
    rows: list[list[Panel | None]] = []
    for i, image in enumerate(images):
        image = check_image(image, f"image {i}")
        row: list[Panel | None] = [Panel(image)]
        for j in range(len(methods)):
            m = _map_of(maps[i], methods, j)
            if m is None:
                row.append(None)
                continue
            m = np.asarray(m)
            if m.ndim != 2:
                raise ValueError(f"image {i}, method {methods[j]!r}: a map must be 2-D, got shape {m.shape}")
            row.append(Panel(grey_map(resize_to(m.astype(np.float32), image.shape[:2]), percentile)))
        rows.append(row)
    return panel_grid(rows, column_titles=["image", *methods], row_titles=list(captions) if captions else None,
                      title=title, cell_inches=cell_inches, dpi=dpi).figure
