"""Baselines that ignore the saliency map: the whole image, and a centred box.

They return ``mask=None`` and never fall back. The map is not read (not even its shape),
so they also serve when a map is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from wsol_bench.boxes import Box, Size
from wsol_bench.registry import require
from wsol_bench.segmentation import BoxExtractor, Localisation
from wsol_bench.segmentation.components import check_image


@dataclass(frozen=True)
class BaselinePrepared:
    """Per-image state: the image frame ``(height, width)``."""

    input_size: Size


def center_box(height: int, width: int, fraction: float) -> Box:
    """Inclusive box centred in a ``height x width`` image whose sides are ``fraction`` of
    the image's (rounded half up, at least 1 pixel); an odd margin leaves the extra pixel
    on the right/bottom. E.g. 100 x 100 at 0.75: ``(12, 12, 86, 86)``."""
    bw = max(1, min(width, math.floor(fraction * width + 0.5)))
    bh = max(1, min(height, math.floor(fraction * height + 0.5)))
    x0 = (width - bw) // 2
    y0 = (height - bh) // 2
    return Box(x0, y0, x0 + bw - 1, y0 + bh - 1)


@dataclass(frozen=True)
class FullImage(BoxExtractor):
    """The whole image as the box. Picklable; no global state."""

    name: ClassVar[str] = "full_image"

    def prepare(self, image: np.ndarray) -> BaselinePrepared:
        """Record the image frame."""
        return BaselinePrepared(check_image(image))

    def localise(self, prepared: BaselinePrepared, saliency: np.ndarray | None) -> Localisation:
        """``(0, 0, W - 1, H - 1)``; the map is ignored."""
        return Localisation(box=Box.full(prepared.input_size), mask=None, fallback=None)


@dataclass(frozen=True)
class Center(BoxExtractor):
    """A centred box covering ``fraction`` of each side. Picklable; no global state."""

    name: ClassVar[str] = "center"
    fraction: float = 0.75  # box side as a fraction of the image side

    def __post_init__(self) -> None:
        require(0.0 < self.fraction <= 1.0, "fraction", self.fraction, "in (0, 1]")

    def prepare(self, image: np.ndarray) -> BaselinePrepared:
        """Record the image frame."""
        return BaselinePrepared(check_image(image))

    def localise(self, prepared: BaselinePrepared, saliency: np.ndarray | None) -> Localisation:
        """:func:`center_box` of the image; the map is ignored."""
        return Localisation(box=center_box(*prepared.input_size, self.fraction), mask=None, fallback=None)
