"""The one box type, used for ground truth, predictions, segmentation output and records.

Conventions (those of the ILSVRC files and devkit):

* pixel coordinates are 0-based and **inclusive**: a box ``(xmin, ymin, xmax, ymax)``
  covers columns ``xmin..xmax`` and rows ``ymin..ymax``, so its width is
  ``xmax - xmin + 1``;
* ``x`` is the column, ``y`` the row; images and frames are ``(height, width)``;
* a box may carry its class (``synset``, a WordNet id such as ``n01440764``); integer class
  indices only appear at the edges (model outputs in sorted-WNID order, devkit files in
  ILSVRC2012_ID order), see :mod:`wsol_bench.data.synsets`.

A :class:`Box` iterates over its four coordinates, so ``x0, y0, x1, y1 = box`` works, and it
is stored in files as the list ``[xmin, ymin, xmax, ymax]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

Size = tuple[int, int]
"""A frame's ``(height, width)``."""


@dataclass(frozen=True)
class Box:
    """A box of 0-based inclusive pixel coordinates, optionally labelled with its class."""

    xmin: int
    ymin: int
    xmax: int
    ymax: int
    synset: str | None = None

    def __post_init__(self) -> None:
        for name in ("xmin", "ymin", "xmax", "ymax"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"Box.{name} must be an integer pixel index, got {value!r}")
            object.__setattr__(self, name, int(value))

    def __iter__(self) -> Iterator[int]:
        return iter(self.coords)

    @property
    def coords(self) -> tuple[int, int, int, int]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    @property
    def width(self) -> int:
        return self.xmax - self.xmin + 1

    @property
    def height(self) -> int:
        return self.ymax - self.ymin + 1

    @classmethod
    def of(cls, coords: Sequence[int] | Box, synset: str | None = None) -> Box:
        """A box from any 4 integer coordinates (a list read from JSON, a tuple, a box)."""
        if isinstance(coords, Box):
            return coords if synset is None else replace(coords, synset=synset)
        x0, y0, x1, y1 = (int(v) for v in coords)
        return cls(x0, y0, x1, y1, synset)

    @classmethod
    def full(cls, size: Size) -> Box:
        """The whole ``(height, width)`` frame."""
        return cls(0, 0, int(size[1]) - 1, int(size[0]) - 1)

    @classmethod
    def from_mask(cls, mask: np.ndarray) -> Box | None:
        """Bounding box of the true pixels of a 2-D mask, or ``None`` if it is empty."""
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(mask.any(axis=0))
        return cls(int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1]))

    def labelled(self, synset: str | None) -> Box:
        return replace(self, synset=synset)

    def clipped(self, size: Size) -> Box:
        """Clipped to a ``(height, width)`` frame (an inverted box collapses to its start)."""
        h, w = int(size[0]), int(size[1])
        x0 = min(max(self.xmin, 0), w - 1)
        y0 = min(max(self.ymin, 0), h - 1)
        x1 = min(max(self.xmax, x0), w - 1)
        y1 = min(max(self.ymax, y0), h - 1)
        return Box(x0, y0, x1, y1, self.synset)

    def scaled(self, from_size: Size, to_size: Size) -> Box:
        """The same region in another frame of the image (sizes ``(height, width)``).

        Pixel ``x`` of the source frame covers ``[x, x + 1)``; the result is the smallest
        inclusive box of the target frame covering the mapped interval, clipped to it.
        """
        (fh, fw), (th, tw) = from_size, to_size
        sx, sy = tw / fw, th / fh
        eps = 1e-9  # keep exact integer products from rounding up a pixel
        nx0 = math.floor(self.xmin * sx + eps)
        ny0 = math.floor(self.ymin * sy + eps)
        nx1 = math.ceil((self.xmax + 1) * sx - eps) - 1
        ny1 = math.ceil((self.ymax + 1) * sy - eps) - 1
        return Box(nx0, ny0, max(nx0, nx1), max(ny0, ny1), self.synset).clipped(to_size)

    def iou(self, other: Box) -> float:
        """Intersection over union with inclusive pixels (the devkit's convention)."""
        return float(iou_inclusive(np.asarray(self.coords), np.asarray(other.coords)))

    def validate(self, size: Size | None, where: str) -> None:
        """Raise ``ValueError`` naming ``where`` if inverted, negative or outside ``size``."""
        what = f"box {self.coords}" + (f" of {self.synset}" if self.synset else "")
        if self.xmin > self.xmax or self.ymin > self.ymax:
            raise ValueError(f"{where}: {what} has xmin > xmax or ymin > ymax")
        if self.xmin < 0 or self.ymin < 0:
            raise ValueError(f"{where}: {what} has a negative coordinate")
        if size is not None and (self.xmax >= size[1] or self.ymax >= size[0]):
            raise ValueError(f"{where}: {what} lies outside the {size[1]}x{size[0]} image")


@dataclass(frozen=True)
class ImageAnnotation:
    """Ground truth of one image: its labelled boxes, and its size when the source records it.

    ``width``/``height`` are ``None`` when the source does not record them (Kaggle's
    ``LOC_val_solution.csv``); XML files always do.
    """

    image_id: str
    width: int | None
    height: int | None
    boxes: tuple[Box, ...]

    @property
    def label(self) -> str:
        """The image's class: CLS-LOC validation images have boxes of one class only."""
        return str(self.boxes[0].synset)

    @property
    def synsets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(str(b.synset) for b in self.boxes))

    @property
    def size(self) -> Size | None:
        """``(height, width)`` if known."""
        return None if self.width is None or self.height is None else (self.height, self.width)

    def boxes_of(self, synset: str) -> list[Box]:
        return [b for b in self.boxes if b.synset == synset]


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
