"""ILSVRC localisation and classification error, exact to the devkit.

Follows ``eval_localization_flat.m`` / ``eval_clsloc.m`` of the ILSVRC devkit:

* a guess ``(synset, box)`` is correct when ``synset`` is the image's label and the box
  has IoU >= 0.5 with ANY ground-truth box of that label, IoU on inclusive pixels
  (:func:`wsol_bench.boxes.iou_inclusive`);
* the error at ``k`` guesses is the mean over images of "none of the first ``k``
  guesses is correct"; classification error ignores the boxes;
* GT-known localisation error scores one box per image, made for the ground-truth
  class (the protocol of later WSOL papers), IoU >= 0.5.

Predictions are the project's long format: one row per guess with columns
``image_id, rank, synset, xmin, ymin, xmax, ymax`` (``rank`` 1-based; a guess without
a box has NaN coordinates and never localises). :class:`LocalisationEvaluator`
streams: ``accumulate`` scores a chunk of images into a few bytes per image, so
50,000 images x 5 guesses need flat memory and seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from wsol_bench.boxes import ImageAnnotation, iou_inclusive
from wsol_bench.metrics.intervals import wilson_interval

PREDICTION_COLUMNS = ["image_id", "rank", "synset", "xmin", "ymin", "xmax", "ymax"]
BOX_COLUMNS = ["xmin", "ymin", "xmax", "ymax"]


@dataclass
class LocalisationMetrics:
    """Error rates over the evaluated images; lists are indexed by ``k - 1``."""

    n_images: int
    loc_error_at_k: list[float]
    cls_error_at_k: list[float]
    gt_known_loc_error: float | None
    loc_error_ci95: list[list[float]]
    cls_error_ci95: list[list[float]]
    gt_known_loc_error_ci95: list[float] | None
    n_missing: int  # images of the evaluated set that received no prediction (counted as errors)

    def to_dict(self) -> dict:
        return asdict(self)


class LocalisationEvaluator:
    """Streaming devkit-exact evaluator over a fixed set of ground-truth images.

    ``ground_truth`` defines the evaluated set; images never passed to
    :meth:`accumulate` count as errors (``n_missing``), so nothing is dropped silently.
    """

    def __init__(
        self,
        ground_truth: Mapping[str, ImageAnnotation],
        max_guesses: int = 5,
        iou_threshold: float = 0.5,
    ) -> None:
        if not ground_truth:
            raise ValueError("LocalisationEvaluator: the ground truth is empty")
        self.max_guesses = max_guesses
        self.iou_threshold = iou_threshold
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

    def accumulate(
        self,
        predictions: pd.DataFrame,
        image_ids: Iterable[str] | None = None,
        gt_known_boxes: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Score the guesses of a chunk of images and remember them.

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
        cls_rank, loc_rank = self._first_correct_ranks(guesses)
        result = pd.DataFrame(index=pd.Index(ids, name="image_id"))
        result["label"] = self._labels.loc[ids].to_numpy()
        result["cls_rank"] = cls_rank.reindex(ids, fill_value=0).astype(np.int16).to_numpy()
        result["loc_rank"] = loc_rank.reindex(ids, fill_value=0).astype(np.int16).to_numpy()
        result["gt_known_iou"] = np.nan
        result["gt_known_correct"] = np.nan
        if gt_known_boxes is not None and len(gt_known_boxes):
            iou = self._gt_known_iou(gt_known_boxes).reindex(ids)
            result["gt_known_iou"] = iou.to_numpy()
            given = iou.notna().to_numpy()
            result.loc[given, "gt_known_correct"] = (iou.to_numpy()[given] >= self.iou_threshold).astype(float)

        self._cls_rank[rows] = result["cls_rank"].to_numpy()
        self._loc_rank[rows] = result["loc_rank"].to_numpy()
        gk = result["gt_known_correct"].to_numpy()
        self._gt_known[rows] = np.where(np.isnan(gk), -1, gk).astype(np.int8)
        self._seen[rows] = True
        return result.reset_index()

    def compute(self) -> LocalisationMetrics:
        """Error rates at k = 1..max_guesses over the whole evaluated set."""
        n = len(self._row)
        ks = range(1, self.max_guesses + 1)
        loc_err = [_error_at(self._loc_rank, k) for k in ks]
        cls_err = [_error_at(self._cls_rank, k) for k in ks]
        given = self._gt_known >= 0
        gt_known = None
        gt_known_ci = None
        if given.any():
            # an image without a GT-known box (e.g. failed to load) counts as wrong
            wrong = int((self._gt_known != 1).sum())
            gt_known = wrong / n
            gt_known_ci = list(wilson_interval(wrong, n))
        return LocalisationMetrics(
            n_images=n,
            loc_error_at_k=loc_err,
            cls_error_at_k=cls_err,
            gt_known_loc_error=gt_known,
            loc_error_ci95=[list(wilson_interval(e * n, n)) for e in loc_err],
            cls_error_ci95=[list(wilson_interval(e * n, n)) for e in cls_err],
            gt_known_loc_error_ci95=gt_known_ci,
            n_missing=int((~self._seen).sum()),
        )

    def _first_correct_ranks(self, guesses: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
        """Per image: the first rank whose label is right, and whose label and box are."""
        labels = self._labels.loc[guesses["image_id"]].to_numpy()
        cls_ok = guesses["synset"].to_numpy() == labels
        right_label = guesses[cls_ok]
        cls_rank = right_label.groupby("image_id")["rank"].min()
        pairs = right_label.merge(self._gt_boxes, on=["image_id", "synset"], suffixes=("", "_gt"))
        iou = iou_inclusive(
            pairs[BOX_COLUMNS].to_numpy(dtype=np.float64),
            pairs[[f"{c}_gt" for c in BOX_COLUMNS]].to_numpy(dtype=np.float64),
        )
        hits = pairs.loc[iou >= self.iou_threshold]
        loc_rank = hits.groupby("image_id")["rank"].min()
        return cls_rank, loc_rank

    def _gt_known_iou(self, boxes: pd.DataFrame) -> pd.Series:
        """Best IoU of each image's GT-known box with the ground-truth boxes of its label."""
        missing = [c for c in ["image_id", *BOX_COLUMNS] if c not in boxes.columns]
        if missing:
            raise ValueError(f"GT-known boxes lack columns {missing}")
        if boxes["image_id"].duplicated().any():
            raise ValueError("GT-known boxes: more than one box for an image")
        b = boxes[["image_id", *BOX_COLUMNS]].copy()
        b["synset"] = self._labels.loc[b["image_id"]].to_numpy()
        pairs = b.merge(self._gt_boxes, on=["image_id", "synset"], suffixes=("", "_gt"))
        pairs["iou"] = iou_inclusive(
            pairs[BOX_COLUMNS].to_numpy(dtype=np.float64),
            pairs[[f"{c}_gt" for c in BOX_COLUMNS]].to_numpy(dtype=np.float64),
        )
        return pairs.groupby("image_id")["iou"].max()


def evaluate(
    predictions: pd.DataFrame,
    ground_truth: Mapping[str, ImageAnnotation],
    max_guesses: int = 5,
    iou_threshold: float = 0.5,
    gt_known_boxes: pd.DataFrame | None = None,
) -> tuple[LocalisationMetrics, pd.DataFrame]:
    """Score all predictions at once over the images of ``ground_truth``."""
    evaluator = LocalisationEvaluator(ground_truth, max_guesses, iou_threshold)
    per_image = evaluator.accumulate(predictions, evaluator.image_ids, gt_known_boxes)
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
