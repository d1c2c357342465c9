"""Maps of the classifier's classes from other networks or inputs ("localisers"), averaged.

The classes of an image come from one pass (the *ranker*: a method, a classifier and its
test-time crops, the run's own); the maps of those classes from one or more *localisers*, each
a :class:`Localiser` with its own classifier and crops (another network, or the same network
at a larger input: ``resize=384, crop=336``). Chosen on images 1-100 of the shared sample and
confirmed on 101-200 (docs/levers.md): EfficientNet-Lite2 ranks the classes, and the mean of
Lite0's CAM at 384 / 336 and Lite2's own CAM localises them.

For each class: each localiser's map (in its own resized frame, :func:`image_saliency`) is
brought to the ranker's resized frame (bilinear, ``cv2.INTER_LINEAR``, pixel centres aligned
as ``align_corners=False``), divided by its maximum (a map whose maximum is not positive is
all zero), and the localisers' maps are averaged (:func:`combine_maps`): values in ``[0, 1]``.
The result is a :class:`SaliencyResult` of the ranker: its mean logits, its classes (top-k by
mean logit, then the extra classes), the combined maps in its frame. A localiser equal to the
ranker reuses the ranker's maps (no second pass).

Class indices are model output indices (sorted-WNID order for ImageNet): every localiser must
score the same classes as the ranker (checked).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np

from wsol_bench.boxes import Size
from wsol_bench.frames import resize_shorter_side
from wsol_bench.models import Classifier
from wsol_bench.registry import require
from wsol_bench.saliency.base import SaliencyMethod
from wsol_bench.saliency.image_saliency import (
    CropSettings,
    SaliencyResult,
    image_saliency,
)


@dataclass(frozen=True)
class EnsembleSettings:
    """The ``ensemble`` section: ``localisers``, each a mapping with a ``model`` section, its
    ``tta`` (resize, crop, crops) and optionally its ``saliency`` (default: the run's method);
    ``own_maps``: the run's own maps join the average. No localiser: the run's maps alone
    (no ensemble)."""

    localisers: tuple[dict[str, Any], ...] = ()
    own_maps: bool = True

    def __post_init__(self) -> None:
        require(all(isinstance(loc, dict) for loc in self.localisers), "localisers", self.localisers,
                "a list of mappings (model, tta, saliency)")
        require(self.own_maps or bool(self.localisers), "own_maps", self.own_maps, "true when there is no localiser")


@dataclass(frozen=True)
class Localiser:
    """A saliency pass: ``method`` on ``classifier`` under the crops of ``crops`` (its own resize)."""

    method: SaliencyMethod
    classifier: Classifier
    crops: CropSettings


def combine_maps(maps: Sequence[np.ndarray], frame: Size) -> np.ndarray:
    """The mean over ``maps`` (each ``(H_i, W_i)``, non-negative) of each map brought to
    ``frame = (height, width)`` bilinearly and divided by its maximum; float32 in ``[0, 1]``.
    A map whose maximum is not positive contributes zeros."""
    if not maps:
        raise ValueError("combine_maps: no maps to combine")
    h, w = int(frame[0]), int(frame[1])
    total = np.zeros((h, w), dtype=np.float64)
    for m in maps:
        m = np.asarray(m, dtype=np.float64)
        if m.ndim != 2:
            raise ValueError(f"combine_maps: expected (H, W) maps, got shape {m.shape}")
        if m.shape != (h, w):
            m = np.asarray(cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR), dtype=np.float64)
        top = float(m.max())
        if top > 0:
            total += m / top
    return (total / len(maps)).astype(np.float32)


def ensemble_saliency(
    ranker: Localiser,
    localisers: Sequence[Localiser],
    images: Sequence[np.ndarray],
    extra_classes: Sequence[Sequence[int]] | None = None,
    num_classes: int | None = None,
) -> list[SaliencyResult]:
    """The ranker's classes of each image with maps combined from ``localisers``.

    ``images``: ``H x W x 3`` uint8 RGB at their original size (each pass resizes them to its
    own ``crops.resize``). The maps are in the ranker's resized frame. See the module docstring.
    """
    if not localisers:
        raise ValueError("ensemble_saliency: at least one localiser is needed")
    framed = [resize_shorter_side(im, ranker.crops.resize) for im in images]
    ranked = image_saliency(ranker.method, ranker.classifier, framed, ranker.crops, extra_classes, num_classes)
    classes = [[int(c) for c in r.classes] for r in ranked]
    width = num_classes if num_classes is not None else (len(ranked[0].logits) if ranked else None)
    per_localiser: list[list[SaliencyResult]] = []
    for loc in localisers:
        if loc == ranker:
            per_localiser.append(ranked)
            continue
        resized = [resize_shorter_side(im, loc.crops.resize) for im in images]
        # top-1 is the fewest the protocol allows; the ranker's classes come as the extra classes
        own = image_saliency(loc.method, loc.classifier, resized, replace(loc.crops, top_k=1), classes, width)
        per_localiser.append(own)
    out = []
    for i, res in enumerate(ranked):
        frame = (int(framed[i].shape[0]), int(framed[i].shape[1]))
        maps = np.stack([
            combine_maps([_map_of(found[i], c) for found in per_localiser], frame) for c in classes[i]
        ]) if classes[i] else np.zeros((0, *frame), dtype=np.float32)
        out.append(SaliencyResult(res.logits, res.classes, maps))
    return out


def _map_of(result: SaliencyResult, cls: int) -> np.ndarray:
    where = np.flatnonzero(result.classes == cls)
    if not len(where):  # image_saliency always lists the requested extra classes
        raise ValueError(f"ensemble_saliency: a localiser returned no map of class {cls}")
    return result.maps[int(where[0])]


__all__ = ["EnsembleSettings", "Localiser", "combine_maps", "ensemble_saliency"]
