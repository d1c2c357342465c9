"""The method: one box per class from an image's saliency maps (Section 3.1 of the paper).

Pure functions of arrays, run in the main process or in segmentation worker processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from wsol_bench.boxes import scale_box
from wsol_bench.localisation.records import BoxT
from wsol_bench.segmentation import Segmenter


@dataclass
class ClassBoxes:
    """Boxes for the maps of one image, in ORIGINAL-image pixels (0-based inclusive)."""

    boxes: list[BoxT]
    fallbacks: list[str | None]
    masks: list[np.ndarray | None] | None  # in the resized frame; only when asked (figures)
    seconds: float


def boxes_from_maps(
    segmenter: Segmenter,
    resized_image: np.ndarray,
    maps: np.ndarray,
    original_size: tuple[int, int],
    keep_masks: bool = False,
) -> ClassBoxes:
    """Segment ``resized_image`` once per map of ``maps`` (``K x H x W``, same frame).

    The image-only terms are prepared once and reused for the K classes; each box is
    mapped from the resized frame to ``original_size`` (height, width).
    """
    start = time.perf_counter()
    prepared = segmenter.prepare(resized_image)
    frame = resized_image.shape[:2]
    boxes: list[BoxT] = []
    fallbacks: list[str | None] = []
    masks: list[np.ndarray | None] = []
    for saliency in maps:
        result = segmenter.localise(prepared, saliency)
        boxes.append(scale_box(result.box, frame, original_size))
        fallbacks.append(result.fallback)
        masks.append(result.mask if keep_masks else None)
    return ClassBoxes(boxes, fallbacks, masks if keep_masks else None, time.perf_counter() - start)

