"""The evaluator protocol: ``start(ground_truth)``, ``accumulate(results)`` per chunk of
images, ``compute() -> dict``.

Evaluators stream: what they keep per image is a few numbers, so 50,000 images cost what
50 do. A metric that needs the saliency maps (MaxBoxAcc, the pointing game) reads them in
:meth:`Evaluator.image_state`, called where the maps are (in the process that computed
them, under sharding); the small JSON-able state it returns travels with the image's
result (and its record on disk) to :meth:`Evaluator.accumulate`. Sharded and resumed runs
therefore give exactly the numbers of one process.

An evaluator is a dataclass whose init fields are its parameters (``evaluation.<name>``
settings in the config); its running state lives in non-init fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from wsol_bench.boxes import Box, ImageAnnotation, Size


@dataclass
class ImageResult:
    """What evaluators see of one image's localisation.

    ``synsets``/``scores``/``boxes``: the guesses, best first (boxes in original-image
    pixels, 0-based inclusive). ``gt_known_box``: the box made for the ground-truth class.
    ``states``: per-metric states from :meth:`Evaluator.image_state`. ``status`` is
    ``"ok"`` or ``"failed"`` (a failed image has no guesses and counts as an error).
    """

    image_id: str
    status: str = "ok"
    synsets: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    gt_known_box: Box | None = None
    states: dict[str, Any] = field(default_factory=dict)


@dataclass
class MapSample:
    """One image's maps, as :meth:`Evaluator.image_state` sees them.

    ``maps``: ``(K, H, W)`` float32 saliency maps in the resized frame (shorter side
    ``saliency.resize``), of ``synsets`` (top-k first, best first, then the ground-truth
    class if it was not among them); ``original_size``: ``(height, width)`` of the image.
    """

    image_id: str
    annotation: ImageAnnotation
    original_size: Size
    synsets: list[str]
    maps: np.ndarray

    def map_of(self, synset: str) -> np.ndarray | None:
        return self.maps[self.synsets.index(synset)] if synset in self.synsets else None


class Evaluator:
    """Base class of evaluators (see the module docstring)."""

    name: ClassVar[str] = ""
    needs_maps: ClassVar[bool] = False

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

    def report_lines(self, summary: Mapping[str, Any]) -> list[str]:
        """Markdown lines for ``report.md`` from the whole run's ``metrics.json`` contents."""
        return []

    def table_columns(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """The few headline figures for the sweep table (name -> value)."""
        return {}

    def write_artifacts(self, out_dir: Path, summary: Mapping[str, Any]) -> None:
        """Write this metric's own files (tables, plots) into the run directory, from the whole
        run's ``metrics.json`` contents; called last by the report. Default: nothing."""
