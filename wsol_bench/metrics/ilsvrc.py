"""ILSVRC localisation and classification error, exact to the devkit.

Follows ``eval_localization_flat.m`` / ``eval_clsloc.m`` of the ILSVRC devkit:

* a guess ``(synset, box)`` is correct when ``synset`` is the image's label and the box
  has IoU >= 0.5 with ANY ground-truth box of that label, IoU on inclusive pixels
  (:func:`wsol_bench.boxes.iou_inclusive`);
* the error at ``k`` guesses is the mean over images of "none of the first ``k``
  guesses is correct"; classification error ignores the boxes;
* GT-known localisation error scores one box per image, made for the ground-truth
  class (the protocol of later WSOL papers), IoU >= 0.5.

Predictions are the project's long format (:mod:`wsol_bench.data.predictions`): one row
per guess with columns ``image_id, rank, synset, xmin, ymin, xmax, ymax`` (``rank``
1-based; a guess without a box has NaN coordinates and never localises).
:class:`IlsvrcLocalisation` streams: ``accumulate`` scores a chunk of images into a few
bytes per image, so 50,000 images x 5 guesses need flat memory and seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from wsol_bench.boxes import ImageAnnotation, iou_inclusive
from wsol_bench.data.predictions import (
    BOX_COLUMNS,
    PREDICTION_COLUMNS,
    gt_known_table,
    predictions_table,
)
from wsol_bench.metrics.base import Evaluator, ImageResult
from wsol_bench.metrics.intervals import wilson_interval
from wsol_bench.registry import require

#: The paper's figure and the one it cites, shown beside every run (context, not like for like).
PAPER_ROWS = (
    {
        "method": "Simonyan et al. 2014: saliency + GraphCut (the paper)",
        "data": "ILSVRC-2013 test set",
        "model": "their ConvNet trained on ILSVRC-2013",
        "top5_loc_error": 0.464,
    },
    {
        "method": "ILSVRC-2013 localisation winner, as cited by the paper (fully supervised)",
        "data": "ILSVRC-2013 test set",
        "model": "-",
        "top5_loc_error": 0.299,
    },
)


@dataclass
class IlsvrcLocalisation(Evaluator):
    """Streaming devkit-exact top-k localisation / classification error, and GT-known error.

    The evaluated set is the ground truth given to :meth:`start`; images never accumulated
    count as errors (``n_missing``), so nothing is dropped silently.
    """

    name: ClassVar[str] = "ilsvrc"
    iou_threshold: float = 0.5
    max_guesses: int = 5
    _row: pd.Series = field(init=False, repr=False)

    def __post_init__(self) -> None:
        require(0.0 < self.iou_threshold <= 1.0, "iou_threshold", self.iou_threshold, "in (0, 1]")
        require(self.max_guesses >= 1, "max_guesses", self.max_guesses, ">= 1")

    def start(self, ground_truth: Mapping[str, ImageAnnotation]) -> None:
        if not ground_truth:
            raise ValueError("ilsvrc evaluator: the ground truth is empty")
        ids = list(ground_truth)
        self._row = pd.Series(np.arange(len(ids)), index=pd.Index(ids, name="image_id"))
        self._labels = pd.Series([ground_truth[i].label for i in ids], index=self._row.index, name="label")
        gt_rows = [(i, b.synset, *b.coords) for i in ids for b in ground_truth[i].boxes]
        self._gt_boxes = pd.DataFrame(gt_rows, columns=["image_id", "synset", *BOX_COLUMNS])
        n = len(ids)
        self._cls_rank = np.zeros(n, dtype=np.int16)  # first correct rank, 0: none
        self._loc_rank = np.zeros(n, dtype=np.int16)
        self._gt_known = np.full(n, -1, dtype=np.int8)  # 1 correct, 0 wrong, -1 not given
        self._seen = np.zeros(n, dtype=bool)

    @property
    def image_ids(self) -> list[str]:
        return list(self._row.index)

    def accumulate(self, results: Sequence[ImageResult]) -> pd.DataFrame:
        return self.accumulate_table(predictions_table(results), [r.image_id for r in results], gt_known_table(results))

    def accumulate_table(
        self,
        predictions: pd.DataFrame,
        image_ids: Iterable[str] | None = None,
        gt_known_boxes: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Score the guesses of a chunk of images given as a long prediction table.

        ``image_ids`` lists the images this chunk covers (default: those in
        ``predictions``); one without any guess (a failed image) scores as wrong.
        ``gt_known_boxes`` has columns ``image_id, xmin, ymin, xmax, ymax``: the box made
        for the ground-truth class. Returns the chunk's per-image results.
        """
        predictions = _check_predictions(predictions)
        predicted = pd.Index(predictions["image_id"].unique())
        ids = predicted if image_ids is None else pd.Index(list(image_ids))
        unknown = ids.union(predicted).difference(self._row.index)
        if len(unknown):
            raise ValueError(f"predictions for {len(unknown)} image(s) without ground truth: {list(unknown[:5])}")
        outside = predicted.difference(ids)
        if len(outside):
            raise ValueError(f"predictions for image(s) not in this chunk: {list(outside[:5])}")
        if ids.has_duplicates:
            raise ValueError(f"image ids repeated in a chunk: {list(ids[ids.duplicated()][:5])}")
        rows = self._row.loc[ids].to_numpy()
        if self._seen[rows].any():
            again = ids[self._seen[rows]]
            raise ValueError(f"image(s) accumulated twice: {list(again[:5])}")

        guesses = predictions[predictions["rank"] <= self.max_guesses]
        labels = self._labels.loc[guesses["image_id"]].to_numpy()
        right_label = guesses[guesses["synset"].to_numpy() == labels]
        cls_rank = right_label.groupby("image_id")["rank"].min()
        hits = self._best_iou(right_label, ["image_id", "rank"])
        loc_rank = hits[hits >= self.iou_threshold].reset_index().groupby("image_id")["rank"].min()
        result = pd.DataFrame(index=pd.Index(ids, name="image_id"))
        result["label"] = self._labels.loc[ids].to_numpy()
        result["cls_rank"] = cls_rank.reindex(ids, fill_value=0).astype(np.int16).to_numpy()
        result["loc_rank"] = loc_rank.reindex(ids, fill_value=0).astype(np.int16).to_numpy()
        result["gt_known_iou"] = np.nan
        result["gt_known_correct"] = np.nan
        if gt_known_boxes is not None and len(gt_known_boxes):
            if gt_known_boxes["image_id"].duplicated().any():
                raise ValueError("GT-known boxes: more than one box for an image")
            boxes = gt_known_boxes.assign(synset=self._labels.loc[gt_known_boxes["image_id"]].to_numpy())
            iou = self._best_iou(boxes, ["image_id"]).reindex(ids)
            result["gt_known_iou"] = iou.to_numpy()
            given = iou.notna().to_numpy()
            result.loc[given, "gt_known_correct"] = (iou.to_numpy()[given] >= self.iou_threshold).astype(float)

        self._cls_rank[rows] = result["cls_rank"].to_numpy()
        self._loc_rank[rows] = result["loc_rank"].to_numpy()
        gk = result["gt_known_correct"].to_numpy()
        self._gt_known[rows] = np.where(np.isnan(gk), -1, gk).astype(np.int8)
        self._seen[rows] = True
        return result.reset_index()

    def compute(self) -> dict[str, Any]:
        """Error rates at k = 1..max_guesses over the whole evaluated set, with 95% Wilson intervals."""
        n = len(self._row)
        ks = range(1, self.max_guesses + 1)
        loc_err = [_error_at(self._loc_rank, k) for k in ks]
        cls_err = [_error_at(self._cls_rank, k) for k in ks]
        gt_known = gt_known_ci = None
        if (self._gt_known >= 0).any():
            wrong = int((self._gt_known != 1).sum())  # an image without a GT-known box counts as wrong
            gt_known, gt_known_ci = wrong / n, list(wilson_interval(wrong, n))
        return {
            "n_images": n,
            "loc_error_at_k": loc_err,
            "cls_error_at_k": cls_err,
            "gt_known_loc_error": gt_known,
            "loc_error_ci95": [list(wilson_interval(e * n, n)) for e in loc_err],
            "cls_error_ci95": [list(wilson_interval(e * n, n)) for e in cls_err],
            "gt_known_loc_error_ci95": gt_known_ci,
            "n_missing": int((~self._seen).sum()),
        }

    def _best_iou(self, boxes: pd.DataFrame, keys: list[str]) -> pd.Series:
        """Best IoU of each row of ``boxes`` (columns ``image_id, synset`` and the box) with the
        ground-truth boxes of its image and synset, grouped by ``keys``; rows whose synset has
        no ground-truth box in the image are left out."""
        pairs = boxes[[*keys, "synset", *BOX_COLUMNS]].merge(
            self._gt_boxes, on=["image_id", "synset"], suffixes=("", "_gt"))
        iou = iou_inclusive(
            pairs[BOX_COLUMNS].to_numpy(dtype=np.float64),
            pairs[[f"{c}_gt" for c in BOX_COLUMNS]].to_numpy(dtype=np.float64),
        )
        return pairs.assign(iou=iou).groupby(keys)["iou"].max()


def evaluate_predictions(
    predictions: pd.DataFrame,
    ground_truth: Mapping[str, ImageAnnotation],
    max_guesses: int = 5,
    iou_threshold: float = 0.5,
    gt_known_boxes: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Score a whole prediction table at once over the images of ``ground_truth``."""
    evaluator = IlsvrcLocalisation(iou_threshold=iou_threshold, max_guesses=max_guesses)
    evaluator.start(ground_truth)
    per_image = evaluator.accumulate_table(predictions, evaluator.image_ids, gt_known_boxes)
    return evaluator.compute(), per_image


def _error_at(first_correct_rank: np.ndarray, k: int) -> float:
    ok = (first_correct_rank >= 1) & (first_correct_rank <= k)
    return float(1.0 - ok.mean())


def _check_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in PREDICTION_COLUMNS if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lack columns {missing}; expected {PREDICTION_COLUMNS}")
    if (predictions["rank"] < 1).any():
        raise ValueError("predictions: rank is 1-based; found a rank < 1")
    dup = predictions.duplicated(["image_id", "rank"])
    if dup.any():
        first = predictions.loc[dup, ["image_id", "rank"]].iloc[0].tolist()
        raise ValueError(f"predictions: more than one guess with the same image and rank, e.g. {first}")
    return predictions
