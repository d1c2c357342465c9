"""``task=evaluate``: score an existing prediction file with the devkit-exact evaluator.

Images of the evaluated set without any guess (``n_missing``) are, by ``evaluate.missing``:
``error`` (default) an error naming how many and the first ids; ``wrong`` the devkit's
semantics (a missing guess is an error); ``skip`` only the predicted images are scored,
and the printed table and ``metrics.json`` say so. When ``dataset.images`` is given and the
ground truth records image sizes (XML), an image whose file has another size is an error.

``evaluate.format=scoremaps evaluate.predictions=DIR``: a folder of score maps in
wsolevaluation's layout (any method's; a run writes one with ``run.save_maps=true``), scored
with the configured map-reading metrics (``evaluation.metrics``: MaxBoxAcc and MaxBoxAccV2,
the pointing game) under the same ``evaluate.missing`` rule; the folder's own
``metadata/image_ids.txt`` bounds the images when present.
"""

from __future__ import annotations

import json
import logging

from omegaconf import DictConfig
from PIL import Image

from wsol_bench.data.predictions import (
    BOX_COLUMNS,
    read_devkit_predictions,
    read_predictions_csv,
)
from wsol_bench.data.sources import EvaluationSet, load_evaluation_set
from wsol_bench.files import atomic_write
from wsol_bench.metrics.ilsvrc import IlsvrcLocalisation
from wsol_bench.metrics.scoring import score_maps
from wsol_bench.reports.localisation_report import json_text
from wsol_bench.reports.metrics_file import format_metrics, without_localisation
from wsol_bench.tasks import run_dir
from wsol_bench.tasks.factory import dataset_spec, evaluators_from, section

log = logging.getLogger(__name__)
FORMATS = ("csv", "devkit", "devkit_cls", "scoremaps")
MISSING = ("error", "wrong", "skip")


def run(cfg: DictConfig) -> float:
    """Evaluate ``evaluate.predictions``; returns the top-5 localisation error (the top-5
    classification error for a file without any box, whose localisation figures are null)."""
    ev = section(cfg, "evaluate")
    if not ev.get("predictions"):
        raise ValueError("task=evaluate needs evaluate.predictions=FILE")
    if ev["format"] not in FORMATS:
        raise ValueError(f"evaluate.format={ev['format']!r} is not one of {FORMATS}")
    if ev["missing"] not in MISSING:
        raise ValueError(f"evaluate.missing={ev['missing']!r} is not one of {MISSING}")
    if ev["format"] == "scoremaps":
        return _score_maps(cfg, ev)
    devkit = [e for e in evaluators_from(cfg) if isinstance(e, IlsvrcLocalisation)]
    evaluator = devkit[0] if devkit else IlsvrcLocalisation()
    spec = dataset_spec(cfg)
    data = load_evaluation_set(spec, need_images=bool(spec.images or spec.root))
    check_image_sizes(data)
    if ev["format"] == "csv":
        predictions = read_predictions_csv(ev["predictions"])
        outside = ~predictions["image_id"].isin(data.ground_truth)
        if outside.any():
            log.warning("%s: %d guesses are for %d images outside the evaluated set; they are not scored",
                        ev["predictions"], int(outside.sum()), predictions.loc[outside, "image_id"].nunique())
            predictions = predictions[~outside]
    else:
        if data.devkit_meta is None:
            raise ValueError("evaluate.format=devkit needs dataset.devkit_meta=meta.mat to map ILSVRC2012_IDs")
        predictions = read_devkit_predictions(ev["predictions"], data.image_ids, data.devkit_meta,
                                              with_boxes=ev["format"] == "devkit")
    labels_only = len(predictions) > 0 and bool(predictions[BOX_COLUMNS].isna().all().all())
    predicted = set(predictions["image_id"])
    missing = [i for i in data.image_ids if i not in predicted]
    ground_truth = data.ground_truth
    if missing and ev["missing"] == "error":
        raise ValueError(
            f"{ev['predictions']}: {len(missing)} of the {len(data.image_ids)} evaluated images have no guess "
            f"(first: {', '.join(missing[:5])}); set evaluate.missing=wrong to count them as errors (the devkit's "
            "rule) or evaluate.missing=skip to score only the predicted images")
    if ev["missing"] == "skip":
        ground_truth = {i: g for i, g in data.ground_truth.items() if i in predicted}
    evaluator.start(ground_truth)
    per_image = evaluator.accumulate_table(predictions, [i for i in ground_truth if i in predicted])
    summary = evaluator.compute()
    if labels_only:
        summary = without_localisation(summary)
    summary = {**summary, "n_missing": len(missing), "missing": ev["missing"],
               "n_scored": len(ground_truth), "predictions": str(ev["predictions"]), "ground_truth": data.source}
    out = run_dir()
    per_image.to_csv(out / "per_image.csv", index=False)
    atomic_write(out / "metrics.json", json.dumps(summary, indent=2) + "\n", fsync=False)
    print(format_metrics(summary, prediction_format=ev["format"]))
    if ev["missing"] == "skip" and missing:
        print(f"evaluate.missing=skip: {len(missing)} images without a guess were left out; "
              f"scored {len(ground_truth)} of {len(data.image_ids)}")
    return summary["cls_error_at_k" if labels_only else "loc_error_at_k"][-1]


def _score_maps(cfg: DictConfig, ev: dict) -> float:
    """``evaluate.format=scoremaps``: the configured map-reading metrics (``evaluation.metrics``:
    MaxBoxAcc/MaxBoxAccV2, the pointing game, with their ``evaluation.<name>`` settings) on a
    folder of wsolevaluation score maps (``<image_id>.npy``) over the evaluated images."""
    spec = dataset_spec(cfg)
    data = load_evaluation_set(spec, need_images=bool(spec.images or spec.root))
    check_image_sizes(data)
    sizes = {}
    for image_id, path in data.image_paths.items():
        with Image.open(path) as im:
            sizes[image_id] = (im.size[1], im.size[0])
    evaluators = [e for e in evaluators_from(cfg) if e.needs_maps and not e.needs_model]
    if not evaluators:
        raise ValueError("evaluate.format=scoremaps: evaluation.metrics lists no metric that reads score maps "
                         "(maxboxacc, pointing_game)")
    evaluation = score_maps(ev["predictions"], data.ground_truth, evaluators, sizes or None, ev["missing"])
    summary = {**evaluation.figures, "failed_metrics": evaluation.failed, "metric_failures": evaluation.image_failures,
               "predictions": str(ev["predictions"]), "ground_truth": data.source}
    atomic_write(run_dir() / "metrics.json", json_text(summary), fsync=False)
    lines = [f"images: {summary['n_scored']}" + (f" ({summary['n_missing']} without a score map, "
                                                  f"evaluate.missing={ev['missing']})" if summary["n_missing"] else "")]
    if "maxboxacc" in summary:
        v2 = summary["maxboxacc_v2_at_iou"]
        lines += [f"MaxBoxAcc: {summary['maxboxacc']:.2f}% (threshold {summary['maxboxacc_best_threshold']:.2f})",
                  f"MaxBoxAccV2: {summary['maxboxacc_v2']:.2f}% (IoU " + "/".join(f"{int(k) / 100:g}" for k in v2)
                  + ": " + "/".join(f"{v:.2f}" for v in v2.values()) + ")"]
    if "pointing_game" in summary:
        lines.append(f"pointing game: {summary['pointing_game']:.3f} (tolerance {summary['pointing_game_tolerance']})")
    for name, error in evaluation.failed.items():
        lines.append(f"metric {name} failed: {error}")
    print("\n".join(lines))
    return float(summary.get("maxboxacc_v2", summary.get("pointing_game", float("nan"))))


def check_image_sizes(data: EvaluationSet) -> None:
    """Raise if an image file's size differs from the size its ground truth records."""
    for image_id, path in data.image_paths.items():
        size = data.ground_truth[image_id].size
        if size is None:
            continue
        try:
            with Image.open(path) as im:
                width, height = im.size
        except OSError as err:
            raise ValueError(f"{path}: cannot read the image's size ({err})") from None
        if (height, width) != tuple(size):
            raise ValueError(f"{path}: the image is {width}x{height} but its ground truth records "
                             f"{size[1]}x{size[0]}: the boxes are in another frame")
