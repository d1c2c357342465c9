"""GrabCut localisation (Rother et al. 2004, OpenCV's ``cv2.grabCut``) from saliency seeds.

The initial mask comes from the same quantiles as the GraphCut method
(:func:`~wsol_bench.segmentation.components.seed_masks`):

* map >= ``fg_quantile`` quantile: ``GC_FGD`` (``hard_seeds``) or ``GC_PR_FGD``;
* map <= ``bg_quantile`` quantile: ``GC_BGD`` (always hard, as in the issue: with soft
  background seeds nothing would distinguish them from the undecided pixels);
* the rest: ``GC_PR_BGD`` (:data:`UNDECIDED_LABEL`), so the initial object colour model is
  learnt from the confident foreground seeds only, as in the GraphCut method; GrabCut then
  re-estimates both models for ``iterations`` iterations.

OpenCV fixes what the GraphCut method exposes as settings: 5 mixture components, gamma 50,
8-neighbourhood; ``gmm_components`` and ``pairwise_weight`` do not apply here. Its k-means
initialisation draws from OpenCV's RNG, reseeded with ``seed`` before every call (this
resets the calling thread's OpenCV RNG). The object mask is ``GC_FGD | GC_PR_FGD`` after the
iterations; its box bounds every such pixel (``keep_components='largest'``: its largest
8-connected component only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from wsol_bench.boxes import Size
from wsol_bench.frames import resize_to
from wsol_bench.registry import require
from wsol_bench.segmentation import Localisation
from wsol_bench.segmentation.components import (
    TOO_FEW_SEEDS,
    SeededExtractor,
    check_image,
    fallback_localisation,
    mask_localisation,
    seed_masks,
    working_map,
    working_size,
)

OPENCV_GMM_COMPONENTS = 5  # cv2.grabCut's fixed mixture size; k-means needs as many samples
UNDECIDED_LABEL = cv2.GC_PR_BGD  # label of pixels that are neither seed set


@dataclass(frozen=True)
class GrabCutPrepared:
    """Per-image state: frames and the working-frame image as contiguous uint8 BGR."""

    input_size: Size
    work_size: Size
    bgr: np.ndarray


@dataclass(frozen=True)
class GrabCut(SeededExtractor):
    """``cv2.grabCut`` initialised from saliency quantiles. Picklable; no global state."""

    name: ClassVar[str] = "grabcut"
    iterations: int = 5  # GrabCut's re-estimation iterations

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.iterations >= 1, "iterations", self.iterations, ">= 1")

    def prepare(self, image: np.ndarray) -> GrabCutPrepared:
        """Resize to the working frame and convert RGB to BGR (OpenCV's channel order)."""
        input_size = check_image(image)
        work_size = working_size(*input_size, self.max_side)
        bgr = np.ascontiguousarray(cv2.cvtColor(resize_to(image, work_size), cv2.COLOR_RGB2BGR))
        return GrabCutPrepared(input_size, work_size, bgr)

    def initial_mask(self, saliency: np.ndarray) -> np.ndarray:
        """The ``GC_*`` uint8 mask of a working-frame map (see the module docstring)."""
        fg, bg = seed_masks(saliency, self.fg_quantile, self.bg_quantile)
        mask = np.full(saliency.shape, UNDECIDED_LABEL, dtype=np.uint8)
        mask[bg] = cv2.GC_BGD
        mask[fg] = cv2.GC_FGD if self.hard_seeds else cv2.GC_PR_FGD
        return mask

    def localise(self, prepared: GrabCutPrepared, saliency: np.ndarray) -> Localisation:
        """Box of the object in ``saliency`` (``(H, W)``, the prepared image's frame)."""
        sal, reason = working_map(saliency, prepared.input_size, prepared.work_size, self.smooth_sigma)
        if reason is not None or sal is None:
            return fallback_localisation(prepared.input_size, reason or "nan_map")
        mask = self.initial_mask(sal)
        is_fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        n_fg = int(is_fg.sum())
        if min(n_fg, mask.size - n_fg) < OPENCV_GMM_COMPONENTS:
            return fallback_localisation(prepared.input_size, TOO_FEW_SEEDS)
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(int(self.seed))
        # the stubs want a rect; OpenCV takes None with GC_INIT_WITH_MASK
        mask, _, _ = cv2.grabCut(prepared.bgr, mask, None, bgd_model, fgd_model,  # type: ignore[call-overload]
                                 int(self.iterations), cv2.GC_INIT_WITH_MASK)
        foreground = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        return mask_localisation(foreground, prepared.input_size, self.keep_components)
