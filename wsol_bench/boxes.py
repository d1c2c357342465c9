"""The one box and ground-truth data model used everywhere.

Conventions (those of the ILSVRC files and devkit):

* pixel coordinates are 0-based and **inclusive**: a box ``(xmin, ymin, xmax, ymax)``
  covers columns ``xmin..xmax`` and rows ``ymin..ymax``, so its width is
  ``xmax - xmin + 1``;
* ``x`` is the column, ``y`` the row; images are ``H x W``;
* classes are WordNet ids (``n01440764``); integer indices only appear at the edges
  (model outputs in sorted-WNID order, devkit files in ILSVRC2012_ID order), see
  :mod:`wsol_bench.data.synsets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class Box:
    """An object box: class and 0-based inclusive pixel coordinates."""

    synset: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int

    @property
    def coords(self) -> tuple[int, int, int, int]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)


@dataclass(frozen=True)
class ImageAnnotation:
    """Ground truth of one image.

    ``width``/``height`` are ``None`` when the source does not record them
    (Kaggle's ``LOC_val_solution.csv``); XML files always do.
    """

    image_id: str
    width: int | None
    height: int | None
    boxes: tuple[Box, ...]

    @property
    def label(self) -> str:
        """The image's class: CLS-LOC validation images have boxes of one class only."""
        return self.boxes[0].synset

    @property
    def synsets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(b.synset for b in self.boxes))


def validate_box(box: Box, width: int | None, height: int | None, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` if the box is inverted or outside the image."""
    if box.xmin > box.xmax or box.ymin > box.ymax:
        raise ValueError(f"{where}: box {box.coords} of {box.synset} has xmin > xmax or ymin > ymax")
    if box.xmin < 0 or box.ymin < 0:
        raise ValueError(f"{where}: box {box.coords} of {box.synset} has a negative coordinate")
    if width is not None and height is not None and (box.xmax >= width or box.ymax >= height):
        raise ValueError(
            f"{where}: box {box.coords} of {box.synset} lies outside the {width}x{height} image"
        )


def iou_inclusive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` and ``b`` (``(..., 4)`` arrays, broadcast), devkit convention.

    Widths are ``x2 - x1 + 1``; boxes with ``iw <= 0`` or ``ih <= 0`` do not overlap
    (IoU 0). NaN coordinates (no box) give IoU 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    inter = iw * ih
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area_a + area_b - inter)
    overlap = (iw > 0) & (ih > 0)
    return np.where(overlap & np.isfinite(iou), iou, 0.0)


def scale_box(
    box: Sequence[int], from_size: tuple[int, int], to_size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Map an inclusive pixel box between two frames of the same image.

    ``from_size``/``to_size`` are ``(height, width)``. Pixel ``x`` of the source frame
    covers ``[x, x + 1)``; the result is the smallest inclusive box of the target
    frame covering the mapped interval, clipped to the target image.
    """
    (fh, fw), (th, tw) = from_size, to_size
    sx, sy = tw / fw, th / fh
    x0, y0, x1, y1 = box
    eps = 1e-9  # keep exact integer products from rounding up a pixel
    nx0 = math.floor(x0 * sx + eps)
    ny0 = math.floor(y0 * sy + eps)
    nx1 = math.ceil((x1 + 1) * sx - eps) - 1
    ny1 = math.ceil((y1 + 1) * sy - eps) - 1
    return clip_box((nx0, ny0, max(nx0, nx1), max(ny0, ny1)), th, tw)


def clip_box(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """Clip an inclusive box to an ``height x width`` image."""
    x0, y0, x1, y1 = (int(v) for v in box)
    x0 = min(max(x0, 0), width - 1)
    y0 = min(max(y0, 0), height - 1)
    x1 = min(max(x1, x0), width - 1)
    y1 = min(max(y1, y0), height - 1)
    return (x0, y0, x1, y1)


def full_image_box(height: int, width: int) -> tuple[int, int, int, int]:
    """The inclusive box of a whole ``height x width`` image."""
    return (0, 0, width - 1, height - 1)


def mask_to_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Inclusive bounding box of the true pixels of a 2-D mask, or ``None`` if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))


def boxes_array(boxes: Iterable[Box]) -> np.ndarray:
    """``(N, 4)`` float array of the boxes' coordinates."""
    return np.array([b.coords for b in boxes], dtype=np.float64).reshape(-1, 4)
