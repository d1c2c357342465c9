"""Running evaluators: over a run's image results, and over stored score maps.

* :func:`run_evaluators` feeds every evaluator the same results (``start``, ``accumulate``,
  ``compute``) and merges their figures; a key another metric (or the report) already
  writes is stored under ``<metric>.<key>`` instead, with a warning, never over it; a
  metric that fails is reported as failed with its error while the others' figures are kept.
* :func:`metric_states` computes the per-image states of the map-reading evaluators for one
  sample, confining a failing ``image_state`` to its metric (the image's other metrics and
  its boxes are unaffected; the failure is recorded with its reason).
* :func:`score_maps` scores clovaai/wsolevaluation score maps (a folder of ``<image_id>.npy``
  files, or arrays) with the map-reading evaluators, through the same protocol as a run;
* :func:`score_predictions` scores a prediction table with the devkit's evaluator, with the
  same rules for missing and unknown images from the CLI and from Python.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsol_bench.boxes import ImageAnnotation, Size
from wsol_bench.metrics.base import Evaluator, ImageResult, MapSample

log = logging.getLogger(__name__)


def evaluator_name(evaluator: Evaluator) -> str:
    """The metric's name (its ``name``, else its class's import path)."""
    return evaluator.name or f"{type(evaluator).__module__}:{type(evaluator).__qualname__}"


def metric_states(evaluators: Sequence[Evaluator], sample: MapSample) -> tuple[dict[str, Any], dict[str, str]]:
    """``(states, failures)`` of ``evaluators`` on ``sample``, by metric name: a metric whose
    ``image_state`` raises gets no state and a failure reason instead."""
    states: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for ev in evaluators:
        name = evaluator_name(ev)
        try:
            states[name] = ev.image_state(sample)
        except Exception as err:  # confined to this metric, recorded
            failures[name] = f"{type(err).__name__}: {err}"
            log.warning("metric %s failed on %s: %s", name, sample.image_id, failures[name])
    return states, failures


@dataclass
class Evaluation:
    """What :func:`run_evaluators` returns: ``figures`` (every metric's keys merged),
    ``by_metric`` (each metric's own keys), ``per_image`` (columns by ``image_id``),
    ``failed`` (metric name -> the error of a metric that could not be computed) and
    ``image_failures`` (metric name -> the number of images whose state it could not compute)."""

    figures: dict[str, Any]
    by_metric: dict[str, dict[str, Any]]
    per_image: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    image_failures: dict[str, int] = field(default_factory=dict)


def run_evaluators(
    evaluators: Sequence[Evaluator], ground_truth: Mapping[str, ImageAnnotation], results: Sequence[ImageResult],
    reserved: Sequence[str] = (),
) -> Evaluation:
    """Every evaluator over ``results`` (the images of ``ground_truth``). ``reserved``: keys
    the caller writes itself (a metric returning one, or a key of an earlier metric, has it
    stored as ``<metric>.<key>``). A metric raising in ``start``/``accumulate``/``compute`` is
    recorded in ``failed`` (its figures are missing); the others go on."""
    figures: dict[str, Any] = {}
    owner: dict[str, str] = {key: "the run's report" for key in reserved}
    by_metric: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    columns = pd.DataFrame({"image_id": [r.image_id for r in results]})
    for ev in evaluators:
        name = evaluator_name(ev)
        try:
            ev.start(ground_truth)
            per_image = ev.accumulate(results)
            own = ev.compute()
            if not isinstance(own, Mapping):
                raise TypeError(f"compute() returned {type(own).__name__}, not a mapping of figures")
        except Exception as err:  # a metric's failure is its own
            failed[name] = f"{type(err).__name__}: {err}"
            log.error("metric %s failed: %s", name, failed[name])
            continue
        clash = sorted(k for k in own if k in owner)
        if clash:  # never over another's figure: the later metric's keys get its name in front
            log.warning("metric %s returns %s, already figures of %s: stored as %s", name, ", ".join(clash),
                        ", ".join(sorted({owner[k] for k in clash})), ", ".join(f"{name}.{k}" for k in clash))
            own = {f"{name}.{k}" if k in owner else k: v for k, v in own.items()}
        owner.update({k: name for k in own})
        by_metric[name] = dict(own)
        figures.update(own)
        if per_image is not None:
            columns = columns.merge(per_image, on="image_id", how="left")
    image_failures: dict[str, int] = {}
    for r in results:
        for name in r.metric_failures:
            image_failures[name] = image_failures.get(name, 0) + 1
    return Evaluation(figures, by_metric, columns, failed, image_failures)


def score_maps(
    maps: str | Path | Mapping[str, np.ndarray],
    ground_truth: Mapping[str, ImageAnnotation],
    evaluators: Sequence[Evaluator],
    original_sizes: Mapping[str, Size] | None = None,
    missing: str = "error",
) -> Evaluation:
    """Score wsolevaluation score maps (224 x 224 in ``[0, 1]``, the ground-truth class's map
    of each image, used as they are) with the map-reading ``evaluators``.

    ``maps``: a folder of ``<image_id>.npy`` files (its ``metadata/image_ids.txt``, when
    present, bounds the evaluated images: an id it lists without ground truth is an error),
    or a mapping image id -> array. ``original_sizes``: ``(height, width)`` per image (for
    the boxes' frame); else the folder's ``metadata/image_sizes.txt``, else the
    annotation's; two sources that disagree are an error naming both. ``missing``: an
    evaluated image without a map is ``"error"`` (default: an error naming how many and the
    first ids), ``"wrong"`` (scored as a miss) or ``"skip"`` (left out). The figures come
    with ``n_missing`` and ``n_scored``.
    """
    from wsol_bench.data.scoremaps import METADATA_DIR, read_metadata, read_scoremap

    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing={missing!r}: must be one of {', '.join(MISSING_POLICIES)}")
    unusable = [evaluator_name(e) for e in evaluators if not e.needs_maps or e.needs_model]
    if unusable:
        raise ValueError(f"metrics {', '.join(unusable)} cannot score stored score maps (they need the boxes or the "
                         "classifier); choose among the map-reading metrics (maxboxacc, pointing_game)")
    sizes_from: dict[str, tuple[Size, str]] = {}
    ids = list(ground_truth)
    if isinstance(maps, Mapping):
        have = set(maps)

        def read(image_id: str) -> np.ndarray:
            from wsol_bench.frames import check_scoremap

            return check_scoremap(np.asarray(maps[image_id]), f"score map of {image_id}")
    else:
        folder = Path(maps)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such score-map folder")
        meta = folder / METADATA_DIR
        if (meta / "image_ids.txt").is_file():
            metadata = read_metadata(meta)
            unknown = [i for i in metadata.image_ids if i not in ground_truth]
            if unknown:
                raise ValueError(f"{meta / 'image_ids.txt'}: {len(unknown)} image ids have no ground truth "
                                 f"(first: {', '.join(unknown[:5])})")
            ids = [i for i in metadata.image_ids]
            sizes_from = {i: ((h, w), str(meta / "image_sizes.txt")) for i, (w, h) in metadata.image_sizes.items()}
        have = {p.stem for p in folder.glob("*.npy")}

        def read(image_id: str) -> np.ndarray:
            return read_scoremap(folder, image_id)

    absent = [i for i in ids if i not in have]
    if absent and missing == "error":
        raise ValueError(f"{maps if not isinstance(maps, Mapping) else 'the score maps'}: {len(absent)} of the "
                         f"{len(ids)} evaluated images have no score map (first: {', '.join(absent[:5])}); pass "
                         "missing=wrong to count them as misses or missing=skip to leave them out")
    scored = [i for i in ids if i in have or missing == "wrong"]
    truth = {i: ground_truth[i] for i in scored}
    results = []
    for image_id in scored:
        if image_id not in have:
            results.append(ImageResult(image_id, status="failed"))
            continue
        size = _original_size(image_id, truth[image_id], original_sizes, sizes_from)
        scoremap = read(image_id)
        sample = MapSample(image_id, truth[image_id], size, [truth[image_id].label], scoremap[None], scoremaps=True)
        states, failures = metric_states(evaluators, sample)
        results.append(ImageResult(image_id, states=states, metric_failures=failures))
    evaluation = run_evaluators(evaluators, truth, results)
    evaluation.figures.update(n_missing=len(absent), n_scored=len(scored), missing=missing)
    return evaluation


MISSING_POLICIES = ("error", "wrong", "skip")


def _original_size(image_id: str, annotation: ImageAnnotation, given: Mapping[str, Size] | None,
                   from_files: Mapping[str, tuple[Size, str]]) -> Size:
    """The image's ``(height, width)``: every source that knows it must agree."""
    known: list[tuple[Size, str]] = []
    if given and image_id in given:
        known.append(((int(given[image_id][0]), int(given[image_id][1])), "the image file"))
    if image_id in from_files:
        known.append(from_files[image_id])
    if annotation.size is not None:
        known.append(((int(annotation.size[0]), int(annotation.size[1])), "its ground truth (XML <size>)"))
    if not known:
        raise ValueError(f"{image_id}: the original image size is unknown (no image, no metadata image_sizes.txt "
                         "line, none in the ground truth)")
    (h, w), where = known[0]
    for (h2, w2), other in known[1:]:
        if (h2, w2) != (h, w):
            raise ValueError(f"{image_id}: {where} gives the image size {w}x{h} but {other} gives {w2}x{h2}; the "
                             "boxes would be scaled into the wrong frame")
    return h, w





def score_predictions(
    predictions: pd.DataFrame,
    ground_truth: Mapping[str, ImageAnnotation],
    evaluator: Any = None,
    missing: str = "error",
    source: str = "predictions",
    outside: str = "error",
    option: str = "missing",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The devkit's figures (:class:`~wsol_bench.metrics.ilsvrc.IlsvrcLocalisation`, or
    ``evaluator``) for a long-format prediction table against ``ground_truth``.

    Guesses for images without ground truth: ``outside="error"`` (an error naming them) or
    ``"warn"`` (left out with a warning: the CLI's evaluated set may be a selection).
    Evaluated images without any guess, by ``missing``: ``"error"`` (default: an error
    giving their number and first ids), ``"wrong"`` (each counts as an error, the devkit's
    rule) or ``"skip"`` (only the predicted images are scored). ``option`` names the
    setting in messages (``evaluate.missing`` on the command line). The figures come with
    ``n_missing``, ``missing`` and ``n_scored``; a table without any box has its
    localisation figures null (``labels_only``).
    """
    from wsol_bench.data.predictions import BOX_COLUMNS
    from wsol_bench.metrics.ilsvrc import IlsvrcLocalisation
    from wsol_bench.reports.metrics_file import without_localisation

    if missing not in MISSING_POLICIES:
        raise ValueError(f"{option}={missing!r}: must be one of {', '.join(MISSING_POLICIES)}")
    evaluator = evaluator or IlsvrcLocalisation()
    unknown = predictions.loc[~predictions["image_id"].isin(ground_truth), "image_id"].unique().tolist()
    if unknown:
        what = (f"{source}: guesses for {len(unknown)} images without ground truth (first: "
                f"{', '.join(map(str, unknown[:5]))})")
        if outside == "error":
            raise ValueError(what + "; give their ground truth or leave them out")
        log.warning("%s; they are not scored", what)
        predictions = predictions[predictions["image_id"].isin(ground_truth)]
    predicted = set(predictions["image_id"])
    absent = [i for i in ground_truth if i not in predicted]
    if absent and missing == "error":
        raise ValueError(
            f"{source}: {len(absent)} of the {len(ground_truth)} evaluated images have no guess (first: "
            f"{', '.join(absent[:5])}); set {option}=wrong to count them as errors (the devkit's rule) or "
            f"{option}=skip to score only the predicted images")
    truth = {i: g for i, g in ground_truth.items() if i in predicted} if missing == "skip" else ground_truth
    evaluator.start(truth)
    per_image = evaluator.accumulate_table(predictions, [i for i in truth if i in predicted])
    figures = evaluator.compute()
    if len(predictions) and bool(predictions[BOX_COLUMNS].isna().all().all()):
        figures = without_localisation(figures)
    return {**figures, "n_missing": len(absent), "missing": missing, "n_scored": len(truth)}, per_image


__all__ = ["Evaluation", "MISSING_POLICIES", "evaluator_name", "metric_states", "run_evaluators", "score_maps",
           "score_predictions"]
