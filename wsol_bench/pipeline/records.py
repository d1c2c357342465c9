"""Per-image result records: what shards write (one JSON line each) and rank 0 merges.

A record holds everything the reports need for one image. Boxes are 0-based inclusive
pixels of the ORIGINAL image (stored as ``[xmin, ymin, xmax, ymax]``); classes are WNIDs,
best first. ``status``: ``ok``; ``failed`` (the image could not be decoded or segmented:
scored as an error); ``size_mismatch`` (the decoded image is not the size its ground truth
records: not scored, since its boxes are in another frame).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from wsol_bench.boxes import Box
from wsol_bench.metrics.base import ImageResult

OK, FAILED, SIZE_MISMATCH = "ok", "failed", "size_mismatch"


@dataclass
class ImageRecord:
    index: int  # position in the evaluated set (sorted file-name order)
    image_id: str
    status: str  # ok | failed | size_mismatch
    error: str | None = None
    height: int = 0  # original image size
    width: int = 0
    synsets: list[str] = field(default_factory=list)  # top-k classes, best first
    scores: list[float] = field(default_factory=list)  # mean logits over the crops
    boxes: list[Box] = field(default_factory=list)
    fallbacks: list[str | None] = field(default_factory=list)  # why a fallback box was used
    gt_known_box: Box | None = None  # box made for the ground-truth class
    gt_known_fallback: str | None = None
    states: dict[str, Any] = field(default_factory=dict)  # per-metric states from the maps
    metric_failures: dict[str, str] = field(default_factory=dict)  # metric -> why its state failed here
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def to_json(self) -> dict:
        data = asdict(self)
        data["boxes"] = [list(b) for b in self.boxes]
        data["gt_known_box"] = list(self.gt_known_box) if self.gt_known_box is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> ImageRecord:
        record = cls(**data)
        record.boxes = [Box.of(b) for b in record.boxes]
        record.gt_known_box = Box.of(record.gt_known_box) if record.gt_known_box is not None else None
        return record

    def result(self) -> ImageResult:
        """The record as the evaluators see it."""
        return ImageResult(self.image_id, self.status, self.synsets, self.scores, self.boxes,
                           self.gt_known_box, self.states, self.metric_failures)


def failed_record(index: int, image_id: str, error: str, timings: dict[str, float] | None = None,
                  status: str = FAILED) -> ImageRecord:
    return ImageRecord(index, image_id, status, error=error, timings=dict(timings or {}))
