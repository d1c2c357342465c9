"""The pointing game (Zhang et al., "Top-down neural attention by excitation backprop"),
as TorchRay's ``benchmark/pointing_game.py`` and ``examples/attribution_benchmark.py`` play it.

* **The point** is the map's maximum in *original-image* pixels: TorchRay computes the
  saliency with ``resize=image_size``, i.e. ``F.interpolate(map, (height, width),
  mode="bilinear", align_corners=False)`` of the float32 map, and takes ``torch.argmax`` of
  the flattened map, the first maximum in row-major order, as ``(x, y) = (i % width,
  i // width)``. The same call is made here (:func:`torchray_resize`) on the map of the
  resized frame, so the point is TorchRay's to the last bit: neither
  :func:`wsol_bench.frames.map_to_original` (OpenCV's float32 bilinear differs from torch's
  float32 by up to ~2e-5 of the range, enough to move a near-tied maximum; for an image
  smaller than the map it averages areas where TorchRay samples) nor mapping the small
  map's argmax coordinates (the interpolated map's maximum need not sit where the small
  map's maximum maps to) would be. Smoothing that TorchRay's benchmark applies for some
  methods belongs to the saliency method, not to the game.
* **A hit** when some pixel of a ground-truth box of the class lies at a Euclidean distance
  *strictly below* ``tolerance`` (15) pixels from the point: TorchRay's
  ``(x - u)**2 + (y - v)**2 < tolerance**2`` over the boxes' mask (boxes are 0-based
  inclusive pixels, as TorchRay's VOC masks after their ``- 1``). A point 14 pixels from a
  box hits; 15 or 16 pixels away misses. Computed in closed form (the nearest pixel of a
  box to an integer point is the point clamped to it), equal to the mask test.
* ``pointing_game``: the ground-truth class's map and boxes; ``pointing_game_top1``: the
  top-1 class's map (``maps[0]``) and its boxes, a miss when the image has no box of that
  class. Both are fractions of the evaluated images (a failed image misses).
  ``pointing_game_class_mean`` is TorchRay's headline ``accuracy``, the mean over classes
  of the per-class hit rate (ground-truth class variant); TorchRay averages over all of its
  dataset's classes (every VOC/COCO class occurs), here over the classes of the evaluated
  images, so a subset of ImageNet is not diluted by absent classes.

Streaming: an image's state is two bits; :meth:`PointingGame.accumulate` counts them (and
per class), so merged shards give exactly one process's figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from wsol_bench.boxes import Box, ImageAnnotation, Size
from wsol_bench.metrics.base import Evaluator, ImageResult, MapSample
from wsol_bench.metrics.intervals import wilson_interval
from wsol_bench.registry import require

#: TorchRay's default tolerance (pixels of the original image).
TOLERANCE = 15


def pointing_point(saliency: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of the first maximum in row-major order (``torch.argmax`` of the flattened map)."""
    index = int(np.argmax(saliency))
    return index % saliency.shape[1], index // saliency.shape[1]


def point_hits(point: tuple[int, int], boxes: Iterable[Box], size: Size, tolerance: int = TOLERANCE) -> bool:
    """Whether some pixel of ``boxes`` (clipped to the ``(height, width)`` frame, as TorchRay's
    mask is) is at distance ``< tolerance`` from ``point = (x, y)``."""
    x, y = point
    for box in boxes:
        b = box.clipped(size)
        dx = max(b.xmin - x, 0, x - b.xmax)
        dy = max(b.ymin - y, 0, y - b.ymax)
        if dx * dx + dy * dy < tolerance * tolerance:
            return True
    return False


def pointing_hit(saliency_original: np.ndarray, boxes: Sequence[Box], tolerance: int = TOLERANCE) -> bool:
    """The pointing game on a map already in original-image pixels; no box: a miss."""
    if not boxes:
        return False
    return point_hits(pointing_point(saliency_original), boxes, saliency_original.shape[:2], tolerance)


@dataclass
class PointingGame(Evaluator):
    """Streaming pointing game, ground-truth class and top-1 class (see the module docstring)."""

    name: ClassVar[str] = "pointing_game"
    needs_maps: ClassVar[bool] = True
    tolerance: int = TOLERANCE
    _labels: Mapping[str, ImageAnnotation] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        require(self.tolerance >= 1, "tolerance", self.tolerance, ">= 1 (pixels)")

    def start(self, ground_truth: Mapping[str, ImageAnnotation]) -> None:
        if not ground_truth:
            raise ValueError("pointing_game evaluator: the ground truth is empty")
        self._labels = ground_truth  # read, not copied
        self._row = {image_id: i for i, image_id in enumerate(ground_truth)}
        self._seen = np.zeros(len(self._row), dtype=bool)
        self._hits = self._top1_hits = self._without_state = self._top1_unknown = 0
        self._class_hits: dict[str, list[int]] = {}  # label -> [hits, images]

    def image_state(self, sample: MapSample) -> dict[str, int | None] | None:
        label = sample.annotation.label
        saliency = sample.map_of(label)
        if saliency is None:
            return None
        hit = self.hit(torchray_resize(saliency, sample.original_size), sample.annotation, label)
        top1 = sample.top1
        if top1 is None:  # stored score maps: no ranking, no top-1 game
            return {"hit": int(hit), "top1_hit": None}
        if top1 == label:
            top1_hit = hit
        elif not sample.annotation.boxes_of(top1):
            top1_hit = False
        else:
            top1_hit = self.hit(torchray_resize(sample.maps[0], sample.original_size), sample.annotation, top1)
        return {"hit": int(hit), "top1_hit": int(top1_hit)}

    def hit(self, saliency_original: np.ndarray, annotation: ImageAnnotation, synset: str) -> bool:
        """The game for ``synset``'s map in original-image pixels."""
        return pointing_hit(saliency_original, annotation.boxes_of(synset), self.tolerance)

    def accumulate(self, results: Sequence[ImageResult]) -> pd.DataFrame:
        ids, hits, top1 = [], [], []
        for r in results:
            row = self._row.get(r.image_id)
            if row is None:
                raise ValueError(f"pointing_game: image {r.image_id!r} is not in the evaluated set")
            if self._seen[row]:
                raise ValueError(f"pointing_game: image {r.image_id!r} accumulated twice")
            self._seen[row] = True
            state = r.states.get(self.name) if r.status == "ok" else None
            if state is None:
                self._without_state += 1
            hit = int(state["hit"]) if state else 0
            if state and state["top1_hit"] is None:
                self._top1_unknown += 1
            top1_hit = int(state["top1_hit"] or 0) if state else 0
            self._hits += hit
            self._top1_hits += top1_hit
            per_class = self._class_hits.setdefault(self._labels[r.image_id].label, [0, 0])
            per_class[0] += hit
            per_class[1] += 1
            ids.append(r.image_id)
            hits.append(hit)
            top1.append(top1_hit)
        return pd.DataFrame({"image_id": ids, "pointing_game_hit": hits, "pointing_game_top1_hit": top1})

    def compute(self) -> dict[str, Any]:
        n = len(self._row)
        n_missing = int((~self._seen).sum())
        counts = {label: list(c) for label, c in self._class_hits.items()}
        if n_missing:  # images never accumulated miss, in their class too
            for image_id, row in self._row.items():
                if not self._seen[row]:
                    counts.setdefault(self._labels[image_id].label, [0, 0])[1] += 1
        class_rates = [h / m for h, m in counts.values()]
        return {
            "pointing_game": self._hits / n,
            "pointing_game_top1": self._top1_hits / n if not self._top1_unknown else None,
            "pointing_game_class_mean": float(np.mean(class_rates)),
            "pointing_game_ci95": list(wilson_interval(self._hits, n)),
            "pointing_game_top1_ci95": list(wilson_interval(self._top1_hits, n)) if not self._top1_unknown else None,
            "pointing_game_tolerance": self.tolerance,
            "pointing_game_n_images": n,
            "pointing_game_n_without_map": self._without_state + n_missing,
        }


def torchray_resize(saliency: np.ndarray, original_size: Size) -> np.ndarray:
    """A map resized to ``original_size = (height, width)`` as TorchRay's ``resize_saliency``:
    float32, ``F.interpolate(bilinear, align_corners=False)``."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.ascontiguousarray(saliency, dtype=np.float32))[None, None]
    size = (int(original_size[0]), int(original_size[1]))
    if tuple(tensor.shape[2:]) == size:
        return tensor[0, 0].numpy()
    with torch.no_grad():
        return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()
