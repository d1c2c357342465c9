"""Baselines that ignore the saliency map: the whole image, and a centred box.

They return ``mask=None`` and never fall back. The map is not read (not even its shape),
so they also serve when a map is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from wsol_bench.boxes import full_image_box
from wsol_bench.config import SegmentationConfig
from wsol_bench.segmentation import Localisation
from wsol_bench.segmentation.components import Size, check_image


@dataclass(frozen=True)
class BaselinePrepared:
    """Per-image state: the image frame ``(height, width)``."""

    input_size: Size


def center_box(height: int, width: int, fraction: float) -> tuple[int, int, int, int]:
    """Inclusive box centred in a ``height x width`` image whose sides are ``fraction`` of
    the image's (rounded half up, at least 1 pixel); an odd margin leaves the extra pixel
    on the right/bottom. E.g. 100 x 100 at 0.75: ``(12, 12, 86, 86)``."""
    bw = max(1, min(width, math.floor(fraction * width + 0.5)))
    bh = max(1, min(height, math.floor(fraction * height + 0.5)))
    x0 = (width - bw) // 2
    y0 = (height - bh) // 2
    return (x0, y0, x0 + bw - 1, y0 + bh - 1)


class FullImageSegmenter:
    """The whole image as the box. Picklable; no global state."""

    def __init__(self, cfg: SegmentationConfig) -> None:
        self.cfg = cfg

    def prepare(self, image: np.ndarray) -> BaselinePrepared:
        """Record the image frame."""
        return BaselinePrepared(check_image(image))

    def localise(self, prepared: BaselinePrepared, saliency: np.ndarray | None) -> Localisation:
        """``(0, 0, W - 1, H - 1)``; the map is ignored."""
        return Localisation(box=full_image_box(*prepared.input_size), mask=None, fallback=None)


class CenterSegmenter:
    """A centred box covering ``center_fraction`` of each side. Picklable; no global state."""

    def __init__(self, cfg: SegmentationConfig) -> None:
        self.cfg = cfg

    def prepare(self, image: np.ndarray) -> BaselinePrepared:
        """Record the image frame."""
        return BaselinePrepared(check_image(image))

    def localise(self, prepared: BaselinePrepared, saliency: np.ndarray | None) -> Localisation:
        """:func:`center_box` of the image; the map is ignored."""
        box = center_box(*prepared.input_size, self.cfg.center_fraction)
        return Localisation(box=box, mask=None, fallback=None)
