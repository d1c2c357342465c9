"""Per-image result records and their conversion to the report tables.

A record holds everything the reports need for one image; records are what shards
write (one JSON line each) and what rank 0 merges. Boxes are 0-based inclusive pixels
of the ORIGINAL image; classes are WNIDs, best first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from wsol_bench.metrics.localisation import BOX_COLUMNS, PREDICTION_COLUMNS

BoxT = tuple[int, int, int, int]


@dataclass
class ImageRecord:
    index: int  # position in the evaluated set (sorted file-name order)
    image_id: str
    status: str  # "ok" or "failed"
    error: str | None = None
    height: int = 0  # original image size
    width: int = 0
    synsets: list[str] = field(default_factory=list)  # top-k classes, best first
    scores: list[float] = field(default_factory=list)  # mean logits over the crops
    boxes: list[BoxT] = field(default_factory=list)
    fallbacks: list[str | None] = field(default_factory=list)  # why a fallback box was used
    gt_known_box: BoxT | None = None  # box made for the ground-truth class
    gt_known_fallback: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "ImageRecord":
        record = cls(**data)
        record.boxes = [tuple(b) for b in record.boxes]
        record.gt_known_box = tuple(record.gt_known_box) if record.gt_known_box is not None else None
        return record


def failed_record(index: int, image_id: str, error: str, timings: dict[str, float] | None = None) -> ImageRecord:
    return ImageRecord(index, image_id, "failed", error=error, timings=dict(timings or {}))


def predictions_table(records: Iterable[ImageRecord]) -> pd.DataFrame:
    """Long format: ``image_id, rank, synset, xmin, ymin, xmax, ymax, score, fallback``."""
    rows = [
        (r.image_id, rank, syn, *box, score, fb)
        for r in records
        for rank, (syn, box, score, fb) in enumerate(zip(r.synsets, r.boxes, r.scores, r.fallbacks), start=1)
    ]
    return pd.DataFrame(rows, columns=[*PREDICTION_COLUMNS, "score", "fallback"])


def gt_known_table(records: Iterable[ImageRecord]) -> pd.DataFrame:
    rows = [(r.image_id, *r.gt_known_box) for r in records if r.gt_known_box is not None]
    return pd.DataFrame(rows, columns=["image_id", *BOX_COLUMNS])


def per_image_table(records: Iterable[ImageRecord]) -> pd.DataFrame:
    """One row per image: status, size, top-1 class, fallbacks, stage timings."""
    rows = []
    for r in records:
        rows.append(
            {
                "index": r.index,
                "image_id": r.image_id,
                "status": r.status,
                "error": r.error,
                "width": r.width,
                "height": r.height,
                "top1_synset": r.synsets[0] if r.synsets else None,
                "top1_score": r.scores[0] if r.scores else np.nan,
                "n_fallback_boxes": sum(fb is not None for fb in r.fallbacks),
                "gt_known_fallback": r.gt_known_fallback,
                **{f"seconds_{k}": v for k, v in r.timings.items()},
            }
        )
    return pd.DataFrame(rows)
