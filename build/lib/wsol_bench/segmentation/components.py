"""Pieces shared by the segmentation methods: input checks, map preprocessing, seeds from
quantiles, connected components and mask -> box.

Frames: the *input* frame is that of the image given to ``prepare`` (and of the map);
the *working* frame is the one segmentation runs in (the input frame, or the input resized
so that its longer side is ``max_side``). Sizes are ``(height, width)``; boxes are 0-based
inclusive :class:`~wsol_bench.boxes.Box` es.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from wsol_bench.boxes import Box, Size
from wsol_bench.frames import resize_mask, resize_to
from wsol_bench.registry import require
from wsol_bench.segmentation import BoxExtractor, Localisation

# Fallback reasons (Localisation.fallback); the box is then the whole input image.
NAN_MAP = "nan_map"  # the map has a NaN or an infinite value
CONSTANT_MAP = "constant_map"  # all values equal (all-zero maps included)
EMPTY_FOREGROUND = "empty_foreground"  # the segmentation labelled no pixel as object
TOO_FEW_SEEDS = "too_few_seeds"  # fewer seed pixels than mixture components
NONPOSITIVE_MAP = "nonpositive_map"  # threshold method: the map's maximum is <= 0

# A (working-frame) map is constant when max - min <= this times max(|max|, |min|): float32
# blurring/resizing of a constant map leaves rounding noise of a few ulps.
CONSTANT_RTOL = 1e-6

Keep = Literal["all", "largest"]


@dataclass(frozen=True)
class MapExtractor(BoxExtractor):
    """Parameters shared by the extractors that read the map: the working frame, the map's
    smoothing and which foreground components make the box."""

    smooth_sigma: float = 8.0  # Gaussian blur of the map, in input-frame pixels (0: none)
    max_side: int | None = 160  # segment at this longer side (None: the input frame)
    keep_components: Keep = "all"  # every foreground pixel, or the largest 8-connected component

    def __post_init__(self) -> None:
        require(self.smooth_sigma >= 0, "smooth_sigma", self.smooth_sigma, ">= 0")
        require(self.max_side is None or self.max_side >= 1, "max_side", self.max_side, "null or >= 1")


@dataclass(frozen=True)
class SeededExtractor(MapExtractor):
    """Adds the seeds from saliency quantiles (Section 3.1 of the paper)."""

    fg_quantile: float = 0.90  # foreground seeds: map >= this quantile (paper: 0.95)
    bg_quantile: float = 0.30  # background seeds: map <= this quantile
    hard_seeds: bool = True  # seeds may not be relabelled by the cut
    seed: int = 0  # random seed of the colour models' initialisation

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.bg_quantile < 1.0, "bg_quantile", self.bg_quantile, "in [0, 1)")
        require(self.bg_quantile < self.fg_quantile <= 1.0, "fg_quantile", self.fg_quantile,
                f"in (bg_quantile={self.bg_quantile}, 1]")


def check_image(image: np.ndarray) -> Size:
    """``(height, width)`` of an ``H x W x 3`` uint8 RGB image; ``ValueError`` otherwise."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {getattr(image, 'shape', None)}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image of shape {image.shape}")
    return int(image.shape[0]), int(image.shape[1])


def check_map(saliency: np.ndarray, size: Size) -> np.ndarray:
    """``saliency`` as a float32 ``(H, W)`` array; ``ValueError`` if not in the ``size`` frame."""
    sal = np.asarray(saliency)
    if sal.shape != tuple(size):
        raise ValueError(f"saliency map of shape {sal.shape} is not in the image frame {tuple(size)}")
    if not np.issubdtype(sal.dtype, np.number) or np.issubdtype(sal.dtype, np.complexfloating):
        raise ValueError(f"expected a real-valued saliency map, got {sal.dtype}")
    return sal.astype(np.float32, copy=False)


def working_size(height: int, width: int, max_side: int | None) -> Size:
    """The working frame: the input, or the input scaled so its longer side is ``max_side``.

    The shorter side is rounded to the nearest integer and is at least 1.
    """
    if max_side is None or max(height, width) == max_side:
        return height, width
    scale = max_side / max(height, width)
    if height >= width:
        return max_side, max(1, int(round(width * scale)))
    return max(1, int(round(height * scale))), max_side


def smooth_map(saliency: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a float32 map (``sigma`` in pixels, reflected borders); 0: unchanged."""
    if sigma <= 0:
        return saliency
    return cv2.GaussianBlur(saliency, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma),
                            borderType=cv2.BORDER_REFLECT)


def map_fallback(saliency: np.ndarray) -> str | None:
    """:data:`NAN_MAP` if any value is not finite, :data:`CONSTANT_MAP` if the map is
    constant (relative tolerance :data:`CONSTANT_RTOL`), else ``None``."""
    if not np.isfinite(saliency).all():
        return NAN_MAP
    lo, hi = float(saliency.min()), float(saliency.max())
    if hi - lo <= CONSTANT_RTOL * max(abs(hi), abs(lo)):
        return CONSTANT_MAP
    return None


def working_map(
    saliency: np.ndarray, input_size: Size, work_size: Size, sigma: float
) -> tuple[np.ndarray | None, str | None]:
    """Check, smooth (``sigma`` in input-frame pixels) and resize a map to the working frame.

    Returns ``(map, None)`` or ``(None, reason)`` for a degenerate map.
    """
    sal = check_map(saliency, input_size)
    reason = map_fallback(sal)
    if reason is not None:
        return None, reason
    sal = resize_to(smooth_map(sal, sigma), work_size)
    reason = map_fallback(sal)
    if reason is not None:
        return None, reason
    return sal, None


def seed_masks(saliency: np.ndarray, fg_quantile: float, bg_quantile: float) -> tuple[np.ndarray, np.ndarray]:
    """Foreground seeds (map >= its ``fg_quantile`` quantile) and background seeds (<= its
    ``bg_quantile`` quantile), as disjoint bool masks.

    Quantiles use numpy's default linear interpolation. When ties make the two thresholds
    equal (``t``; e.g. a map that is zero on more than ``fg_quantile`` of its pixels), the
    seeds are split at ``t``: foreground ``> t`` and background ``<= t`` (or, if nothing
    exceeds ``t``, foreground ``>= t`` and background ``< t``). For a non-constant map both
    masks are then non-empty.
    """
    t_bg, t_fg = np.quantile(saliency, [bg_quantile, fg_quantile])
    if t_fg > t_bg:
        return saliency >= t_fg, saliency <= t_bg
    fg = saliency > t_fg
    if fg.any():
        return fg, ~fg
    fg = saliency >= t_fg
    return fg, ~fg


def select_components(mask: np.ndarray, keep: str) -> tuple[np.ndarray, Box | None]:
    """The kept object mask and its inclusive box (``None`` if ``mask`` is empty).

    ``keep='largest'``: the largest 8-connected component (ties: the first in raster order
    of its top-left-most pixel, i.e. OpenCV's lowest label); ``'all'``: every foreground pixel.
    """
    if keep == "all":
        return mask, Box.from_mask(mask)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    if count <= 1:
        return mask, None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[best, :4])
    return labels == best, Box(x, y, x + w - 1, y + h - 1)


def fallback_localisation(input_size: Size, reason: str) -> Localisation:
    """The whole-image box of the input frame, no mask, and the fallback ``reason``."""
    return Localisation(box=Box.full(input_size), mask=None, fallback=reason)


def mask_localisation(foreground: np.ndarray, input_size: Size, keep: str) -> Localisation:
    """Localisation from a working-frame foreground mask: kept components -> box, with box
    and mask mapped back to the input frame (:meth:`~wsol_bench.boxes.Box.scaled`, nearest
    neighbour for the mask). An empty foreground gives the :data:`EMPTY_FOREGROUND` fallback.
    """
    mask, box = select_components(foreground, keep)
    if box is None:
        return fallback_localisation(input_size, EMPTY_FOREGROUND)
    work_size = (int(mask.shape[0]), int(mask.shape[1]))
    if work_size != tuple(input_size):
        box = box.scaled(work_size, input_size)
        mask = resize_mask(mask, input_size)
    return Localisation(box=box, mask=mask, fallback=None)
