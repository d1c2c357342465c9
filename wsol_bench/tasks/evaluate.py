"""``task=evaluate``: score an existing prediction file with the devkit-exact evaluator."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from wsol_bench.config import DatasetConfig, EvaluateConfig
from wsol_bench.data.predictions import read_devkit_predictions, read_predictions_csv
from wsol_bench.data.sources import load_evaluation_set
from wsol_bench.metrics.localisation import LocalisationEvaluator
from wsol_bench.reports.metrics_file import format_metrics, write_metrics
from wsol_bench.tasks import run_dir, section

log = logging.getLogger(__name__)
FORMATS = ("csv", "devkit", "devkit_cls")


def run(cfg: DictConfig) -> float:
    """Evaluate ``evaluate.predictions``; returns the top-5 localisation error."""
    ev: EvaluateConfig = section(cfg, "evaluate", EvaluateConfig)
    if not ev.predictions:
        raise ValueError("task=evaluate needs evaluate.predictions=FILE")
    if ev.format not in FORMATS:
        raise ValueError(f"evaluate.format={ev.format!r} is not one of {FORMATS}")
    data = load_evaluation_set(section(cfg, "dataset", DatasetConfig), need_images=bool(cfg.dataset.images))
    if ev.format == "csv":
        predictions = read_predictions_csv(ev.predictions)
        outside = ~predictions["image_id"].isin(data.ground_truth)
        if outside.any():
            log.warning(
                "%s: %d guesses are for %d images outside the evaluated set; they are not scored",
                ev.predictions, int(outside.sum()), predictions.loc[outside, "image_id"].nunique(),
            )
            predictions = predictions[~outside]
    else:
        if data.devkit_meta is None:
            raise ValueError("evaluate.format=devkit needs dataset.devkit_meta=meta.mat to map ILSVRC2012_IDs")
        predictions = read_devkit_predictions(
            ev.predictions, data.image_ids, data.devkit_meta, with_boxes=ev.format == "devkit"
        )
    evaluator = LocalisationEvaluator(data.ground_truth, iou_threshold=ev.iou_threshold)
    per_image = evaluator.accumulate(predictions, data.image_ids)
    metrics = evaluator.compute()
    out = run_dir()
    per_image.to_csv(out / "per_image.csv", index=False)
    write_metrics(out / "metrics.json", metrics, predictions=str(ev.predictions), ground_truth=data.source)
    print(format_metrics(metrics))
    return metrics.loc_error_at_k[-1]
