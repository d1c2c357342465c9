"""Threshold localisation (the CAM / Grad-CAM convention, Zhou et al. 2016).

The object mask is every pixel of the (optionally smoothed, optionally resized to
``max_side``) map whose value is strictly above ``threshold * max(map)``
(``keep_components='largest'``: the largest 8-connected region of them); the box bounds it.
No min-max normalisation: saliency maps are non-negative, and a map whose maximum is <= 0
falls back to the whole image (``'nonpositive_map'``). The image is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from wsol_bench.boxes import Size
from wsol_bench.registry import require
from wsol_bench.segmentation import Localisation
from wsol_bench.segmentation.components import (
    NONPOSITIVE_MAP,
    MapExtractor,
    check_image,
    fallback_localisation,
    mask_localisation,
    working_map,
    working_size,
)


@dataclass(frozen=True)
class ThresholdPrepared:
    """Per-image state: the input and working frames ``(height, width)``."""

    input_size: Size
    work_size: Size


@dataclass(frozen=True)
class Threshold(MapExtractor):
    """Box of the region above ``threshold * max`` (all of it, or its largest component).
    Picklable; no global state."""

    name: ClassVar[str] = "threshold"
    threshold: float = 0.2  # fraction of the map's maximum

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.threshold < 1.0, "threshold", self.threshold, "in [0, 1)")

    def prepare(self, image: np.ndarray) -> ThresholdPrepared:
        """Record the frames (the method only looks at the map)."""
        input_size = check_image(image)
        return ThresholdPrepared(input_size, working_size(*input_size, self.max_side))

    def localise(self, prepared: ThresholdPrepared, saliency: np.ndarray) -> Localisation:
        """Box of the kept region of ``saliency`` above ``threshold`` times its maximum."""
        sal, reason = working_map(saliency, prepared.input_size, prepared.work_size, self.smooth_sigma)
        if reason is not None or sal is None:
            return fallback_localisation(prepared.input_size, reason or "nan_map")
        top = float(sal.max())
        if top <= 0:
            return fallback_localisation(prepared.input_size, NONPOSITIVE_MAP)
        return mask_localisation(np.asarray(sal > self.threshold * top), prepared.input_size, self.keep_components)
