"""The paper's figures, drawn from arrays (Simonyan, Vedaldi & Zisserman 2014).

* :func:`paper_figure2` (their Figure 2): images, each with the saliency map of its top-1
  class beneath it, captioned with the class name and score;
* :func:`paper_figure3` (their Figure 3): one row per image: the image, its saliency map,
  the GraphCut seeds, the GraphCut mask and the image with the box.

Maps are grey on their own scale (black 0, white the map's ``percentile``-th percentile,
99 by default so that a few very bright pixels do not darken the rest; 100 gives the
maximum): see :func:`wsol_bench.figures.layout.grey_map`. Both functions return a
:class:`matplotlib.figure.Figure`; write it with :func:`wsol_bench.figures.save_figure`
(the PNG is ``figure size x dpi`` pixels).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from matplotlib.figure import Figure

from wsol_bench.boxes import Box
from wsol_bench.figures.layout import (
    BoxMark,
    Panel,
    check_image,
    grey_map,
    masked_image,
    panel_grid,
    seed_overlay,
)
from wsol_bench.figures.palette import BOX_STYLES, SEED_COLOURS

BOX_STYLE = BOX_STYLES["guess (not scored)"]  # the predicted box (dotted orange)
GT_STYLE = BOX_STYLES["ground truth"]  # ground-truth boxes (dashed bluish green)
BOX_COLOUR, GT_COLOUR = BOX_STYLE.colour, GT_STYLE.colour


def class_caption(name: str, score: float | None = None, score_name: str = "logit") -> str:
    """``'name'`` and, when given, ``'logit 12.34'`` on a second line."""
    return name if score is None else f"{name}\n{score_name} {score:.2f}"


def _check_map(image: np.ndarray, saliency: np.ndarray, what: str) -> None:
    if np.asarray(saliency).shape != image.shape[:2]:
        raise ValueError(f"{what}: the map is {np.asarray(saliency).shape} but the image is {image.shape[:2]}: "
                         "pass the image in the maps' frame (the resized frame)")


@dataclass(frozen=True)
class ImageMap:
    """One image of Figure 2: ``image`` (``H x W x 3`` uint8 RGB) in the frame of ``saliency``
    (``H x W``, >= 0), and the caption shown under the map (e.g. :func:`class_caption`)."""

    image: np.ndarray
    saliency: np.ndarray
    caption: str = ""


def paper_figure2(
    items: Sequence[ImageMap],
    columns: int = 4,
    percentile: float = 99.0,
    cell_inches: float = 2.0,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Figure 2: ``columns`` images per row of images, each with its map in the row beneath
    and its caption under the map. Images of any sizes: each keeps its aspect ratio in a
    cell ``cell_inches`` wide (rows of images and of maps: ``2 * ceil(len(items) / columns)``
    grid rows)."""
    if not items:
        raise ValueError("paper_figure2 needs at least one image")
    if columns < 1:
        raise ValueError(f"columns={columns} must be >= 1")
    rows: list[list[Panel | None]] = []
    align: list[str] = []
    for start in range(0, len(items), columns):
        group = items[start:start + columns]
        images: list[Panel | None] = []
        maps: list[Panel | None] = []
        for k, item in enumerate(group, start=start):
            image = check_image(item.image, f"item {k}: image")
            _check_map(image, item.saliency, f"item {k}")
            images.append(Panel(image))
            maps.append(Panel(grey_map(item.saliency, percentile), item.caption))
        rows += [images, maps]
        align += ["bottom", "top"]  # each map right under its image
    return panel_grid(rows, title=title, cell_inches=cell_inches, dpi=dpi, row_align=align).figure


@dataclass(frozen=True)
class SegmentationRow:
    """One row of Figure 3, all in the frame of ``image`` (``H x W x 3`` uint8 RGB) except the seeds.

    ``saliency``: ``H x W`` map. ``seeds``: ``(foreground, background)`` bool masks in the
    extractor's working frame (any size; resized nearest to the image), or ``None``.
    ``mask``: ``H x W`` bool object mask, or ``None``. ``box``: the predicted box, or ``None``.
    ``ground_truth``: boxes drawn dashed on the last panel. ``caption``: the row's title
    (e.g. the class name and score).
    """

    image: np.ndarray
    saliency: np.ndarray
    seeds: tuple[np.ndarray, np.ndarray] | None = None
    mask: np.ndarray | None = None
    box: Box | None = None
    caption: str = ""
    ground_truth: tuple[Box, ...] = field(default=())


FIGURE3_COLUMNS = (
    "image",
    "saliency map",
    f"seeds ({SEED_COLOURS['foreground']}: object, {SEED_COLOURS['background']}: background)",
    "GraphCut mask",
    f"box (dotted {BOX_STYLE.colour_name}; ground truth dashed {GT_STYLE.colour_name})",
)


def paper_figure3(
    rows: Sequence[SegmentationRow],
    percentile: float = 99.0,
    cell_inches: float = 2.0,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """Figure 3: per row, the image, its map, the seeds over the dimmed image
    (:func:`~wsol_bench.figures.layout.seed_overlay`), the image inside the mask (black
    outside) and the image with the box; column titles on top, each row titled with its
    caption. A missing part (no seeds, no mask, no box) leaves its cell empty."""
    if not rows:
        raise ValueError("paper_figure3 needs at least one row")
    grid: list[list[Panel | None]] = []
    for k, row in enumerate(rows):
        image = check_image(row.image, f"row {k}: image")
        _check_map(image, row.saliency, f"row {k}")
        seeds = None if row.seeds is None else Panel(seed_overlay(image, *row.seeds))
        mask = None
        if row.mask is not None:
            if np.asarray(row.mask).shape != image.shape[:2]:
                raise ValueError(f"row {k}: the mask is {np.asarray(row.mask).shape}, the image {image.shape[:2]}")
            mask = Panel(masked_image(image, row.mask))
        marks = tuple(BoxMark(b, GT_COLOUR, 1.5, GT_STYLE.linestyle) for b in row.ground_truth)
        if row.box is not None:
            marks += (BoxMark(row.box, BOX_COLOUR, 2.5, BOX_STYLE.linestyle),)
        boxed = Panel(image, boxes=marks) if marks else None
        grid.append([Panel(image), Panel(grey_map(row.saliency, percentile)), seeds, mask, boxed])
    titles = list(FIGURE3_COLUMNS)
    if not any(r.ground_truth for r in rows):
        titles[-1] = f"box (dotted {BOX_STYLE.colour_name})"
    return panel_grid(grid, column_titles=titles, row_titles=[r.caption for r in rows],
                      title=title, cell_inches=cell_inches, dpi=dpi).figure


__all__ = ["ImageMap", "SegmentationRow", "class_caption", "paper_figure2", "paper_figure3"]
