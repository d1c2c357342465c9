"""The evaluator protocol: ``start(ground_truth)``, ``image_state(sample)`` per image where
the maps are, ``accumulate(results)`` per chunk of images, ``compute() -> dict``.

Evaluators stream: what they keep per image is a few numbers, so 50,000 images cost what
50 do. A metric that needs the saliency maps (MaxBoxAcc, the pointing game) reads them in
:meth:`Evaluator.image_state`, called where the maps are (in the process that computed
them, under sharding); a metric that also needs the classifier (deletion / insertion,
ROAD) sets ``needs_model`` and finds it in ``sample.classifier``. The small JSON-able state
``image_state`` returns travels with the image's result (and its record on disk) to
:meth:`Evaluator.accumulate`. Sharded and resumed runs therefore give exactly the numbers
of one process. An image whose state is missing (it failed, or the metric's
``image_state`` raised: recorded, the other metrics unaffected) counts as that metric says
(a miss, or left out and counted).

An evaluator is a dataclass whose init fields are its parameters (``evaluation.<name>``
settings in the config); its running state lives in non-init fields. What a report shows
of it (markdown, sweep-table columns, plots) is :mod:`wsol_bench.reports`'s business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from wsol_bench.boxes import Box, ImageAnnotation, Size


@dataclass
class ImageResult:
    """What evaluators see of one image's localisation.

    ``synsets``/``scores``/``boxes``: the guesses, best first (boxes in original-image
    pixels, 0-based inclusive). ``gt_known_box``: the box made for the ground-truth class.
    ``states``: per-metric states from :meth:`Evaluator.image_state`; ``metric_failures``:
    metric name -> why its ``image_state`` failed on this image (that metric has no state).
    ``status`` is ``"ok"`` or ``"failed"`` (a failed image has no guesses and counts as an error).
    """

    image_id: str
    status: str = "ok"
    synsets: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    gt_known_box: Box | None = None
    states: dict[str, Any] = field(default_factory=dict)
    metric_failures: dict[str, str] = field(default_factory=dict)


@dataclass
class MapSample:
    """One image's maps, as :meth:`Evaluator.image_state` sees them.

    ``maps``: ``(K, H, W)`` float32 saliency maps in the resized frame (shorter side
    ``tta.resize``), of ``synsets`` (top-k first, best first, then the ground-truth class
    if it was not among them); ``original_size``: ``(height, width)`` of the image.
    ``image``: the image in the maps' frame, ``H x W x 3`` uint8 RGB (``None`` when scoring
    stored score maps). ``classifier``: the run's classifier (:class:`~wsol_bench.models.Classifier`,
    its logits of ``[0, 1]`` RGB crops), only for evaluators with ``needs_model``; ``classes``:
    the classifier's output index of each of ``synsets`` (empty when unknown, e.g. score maps).
    ``scoremaps``: the maps are stored score maps in clovaai/wsolevaluation's form (224 x
    224, in ``[0, 1]``, to be used as they are), one per image for its ground-truth class,
    and ``synsets`` is not a ranking (:attr:`top1` is ``None``).
    """

    image_id: str
    annotation: ImageAnnotation
    original_size: Size
    synsets: list[str]
    maps: np.ndarray
    image: np.ndarray | None = None
    classifier: Any = None
    scoremaps: bool = False
    classes: list[int] = field(default_factory=list)

    def map_of(self, synset: str) -> np.ndarray | None:
        return self.maps[self.synsets.index(synset)] if synset in self.synsets else None

    def class_of(self, synset: str) -> int | None:
        """The classifier's output index of ``synset`` (``None`` when it has no map or unknown)."""
        if synset not in self.synsets or len(self.classes) != len(self.synsets):
            return None
        return int(self.classes[self.synsets.index(synset)])

    @property
    def top1(self) -> str | None:
        """The top-1 class (its map is ``maps[0]``), ``None`` when unknown."""
        return None if self.scoremaps or not self.synsets else self.synsets[0]


class Evaluator:
    """Base class of evaluators (see the module docstring)."""

    name: ClassVar[str] = ""
    needs_maps: ClassVar[bool] = False
    needs_model: ClassVar[bool] = False  # image_state reads sample.classifier (runs in the rank's process)

    def start(self, ground_truth: Mapping[str, ImageAnnotation]) -> None:
        """Begin a new evaluation over the images of ``ground_truth`` (the evaluated set)."""
        raise NotImplementedError

    def image_state(self, sample: MapSample) -> Any:
        """JSON-able per-image state computed from the maps (only when ``needs_maps``)."""
        return None

    def accumulate(self, results: Sequence[ImageResult]) -> pd.DataFrame | None:
        """Score a chunk of images; returns per-image columns (``image_id`` first) or ``None``."""
        raise NotImplementedError

    def compute(self) -> dict[str, Any]:
        """The figures over every image seen, as flat JSON-able keys for ``metrics.json``."""
        raise NotImplementedError
