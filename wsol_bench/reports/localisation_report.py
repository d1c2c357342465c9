"""The reports of a localisation run, written by rank 0 from the merged records.

Files (in the run directory), written in this order so that a failure later loses
nothing earlier: ``predictions.csv`` (long format), ``predictions.devkit.txt`` (devkit task
2, when ``meta.mat`` is known), ``per_image.csv``, ``per_class.csv``, ``metrics.json`` (every
evaluator's figures, the run's description, and ``table``: the headline columns of the
sweep table), each metric's own files and ``report.md`` (the run, then each metric's
section; the ILSVRC one beside the paper's figures). What each metric shows is
:mod:`wsol_bench.reports.sections`'s.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsol_bench.data.predictions import predictions_table, write_devkit_predictions
from wsol_bench.data.sources import EvaluationSet
from wsol_bench.files import atomic_write
from wsol_bench.metrics.base import Evaluator
from wsol_bench.metrics.scoring import Evaluation, evaluator_name, run_evaluators
from wsol_bench.pipeline.records import SIZE_MISMATCH, ImageRecord
from wsol_bench.reports.sections import section_of


def per_image_table(records: Sequence[ImageRecord], data: EvaluationSet) -> pd.DataFrame:
    """One row per image: status, size, each guess (class, logit, box ``x0 y0 x1 y1`` in
    original pixels, ``iou_same_class_k``: the devkit's IoU, with the best ground-truth box of
    the guess's class, 0 when the image has none; the per-image figure shows the same), the
    GT-known box, fallbacks, stage timings."""
    rows = []
    for r in records:
        truth = data.ground_truth.get(r.image_id)
        guesses: dict[str, object] = {}
        for k, (synset, score, box) in enumerate(zip(r.synsets, r.scores, r.boxes), start=1):
            same_class = truth.boxes_of(synset) if truth else []
            guesses.update({f"synset_{k}": synset, f"score_{k}": score, f"box_{k}": " ".join(map(str, box)),
                            f"iou_same_class_{k}": max((box.iou(b) for b in same_class), default=0.0)})
        rows.append({
            "index": r.index,
            "image_id": r.image_id,
            "status": r.status,
            "error": r.error,
            "width": r.width,
            "height": r.height,
            "top1_synset": r.synsets[0] if r.synsets else None,
            "top1_score": r.scores[0] if r.scores else np.nan,
            "n_fallback_boxes": sum(fb is not None for fb in r.fallbacks),
            "gt_known_box": " ".join(map(str, r.gt_known_box)) if r.gt_known_box is not None else None,
            "gt_known_fallback": r.gt_known_fallback,
            "metric_failures": "; ".join(f"{k}: {v}" for k, v in r.metric_failures.items()) or None,
            **guesses,
            **{f"seconds_{k}": v for k, v in r.timings.items()},
        })
    return pd.DataFrame(rows)


def evaluate_records(
    records: Sequence[ImageRecord], data: EvaluationSet, evaluators: Sequence[Evaluator],
    reserved: Sequence[str] = (),
) -> Evaluation:
    """Run every evaluator over the scored records (failed images count as errors; images
    whose ground truth is in another frame are left out)."""
    scored = [r for r in records if r.status != SIZE_MISMATCH]
    ground_truth = {r.image_id: data.ground_truth[r.image_id] for r in scored}
    return run_evaluators(evaluators, ground_truth, [r.result() for r in scored], reserved)


#: what ran, in the headline of report.md and the sweep table
RUN_KEYS = ("model", "saliency", "crops", "segmentation", "data")
#: keys of metrics.json written by the report itself (no metric may return them)
REPORT_KEYS = (*RUN_KEYS, "n_failed", "n_unscored", "n_size_mismatch", "n_fallback_boxes", "seconds_per_image",
               "table", "metric_failures", "failed_metrics", "world_size")


def write_localisation_report(
    out_dir: Path, records: Sequence[ImageRecord], data: EvaluationSet, evaluators: Sequence[Evaluator],
    description: Mapping[str, Any],
) -> dict:
    """Write every report file; returns the contents of ``metrics.json``.

    ``description``: the run (model, saliency method, crops, box extractor, data; counters),
    written into ``metrics.json``; its :data:`RUN_KEYS` head ``report.md`` and the sweep table."""
    records = sorted(records, key=lambda r: r.index)
    predictions = predictions_table(records)
    predictions["fallback"] = [fb for r in records for fb in r.fallbacks[: len(r.synsets)]]
    atomic_write(out_dir / "predictions.csv", predictions.to_csv(index=False), fsync=False)
    if data.devkit_meta is not None:
        write_devkit_predictions(out_dir / "predictions.devkit.txt", predictions, [r.image_id for r in records],
                                 data.devkit_meta)
    evaluation = evaluate_records(records, data, evaluators, (*REPORT_KEYS, *description))
    per_image = per_image_table(records, data).merge(evaluation.per_image, on="image_id", how="left")
    unscored = pd.DataFrame(
        {"image_id": list(data.unscored), "status": "no_ground_truth", "error": list(data.unscored.values())}
    )
    listed = pd.concat([per_image, unscored], ignore_index=True) if len(unscored) else per_image
    integer_columns = [c for c in ("index", "width", "height", "n_fallback_boxes", "cls_rank", "loc_rank")
                       if c in listed.columns]
    atomic_write(out_dir / "per_image.csv",
                 listed.astype({c: "Int64" for c in integer_columns}).to_csv(index=False), fsync=False)
    if {"label", "loc_rank", "cls_rank"} <= set(per_image.columns):
        atomic_write(out_dir / "per_class.csv", per_class_table(per_image, data).to_csv(index=False), fsync=False)

    ok = per_image[per_image.status == "ok"]
    seconds = {c.removeprefix("seconds_"): float(ok[c].mean()) for c in ok.columns if c.startswith("seconds_")}
    n_mismatch = int((per_image.status == SIZE_MISMATCH).sum())
    table = {k: description[k] for k in RUN_KEYS if k in description}
    for ev in evaluators:
        name = evaluator_name(ev)
        if name in evaluation.by_metric:
            table.update(section_of(name).columns(ev, evaluation.by_metric[name]))
    extra = {
        "n_failed": int((per_image.status == "failed").sum()),
        "n_unscored": len(data.unscored) + n_mismatch,  # reported in per_image.csv, not scored
        "n_size_mismatch": n_mismatch,
        "n_fallback_boxes": int(per_image["n_fallback_boxes"].sum()),
        "metric_failures": evaluation.image_failures,
        "failed_metrics": evaluation.failed,
        "seconds_per_image": seconds,
        **description,
    }
    result = {**evaluation.figures, **extra, "table": table}
    atomic_write(out_dir / "metrics.json", json_text(result), fsync=False)
    for ev in evaluators:
        name = evaluator_name(ev)
        artifacts = section_of(name).artifacts
        if artifacts is not None and name in evaluation.by_metric:
            artifacts(ev, evaluation.by_metric[name], out_dir)
    figures = sorted(p.relative_to(out_dir).as_posix() for p in (out_dir / "figures").glob("*.png"))
    atomic_write(out_dir / "report.md", report_markdown(result, evaluators, evaluation, figures), fsync=False)
    return result


def json_text(data: Mapping[str, Any]) -> str:
    """``data`` as indented JSON; numpy scalars and arrays become numbers and lists, anything
    else JSON cannot hold its ``repr`` (so a metric's odd value never loses the file)."""

    def plain(value: Any) -> Any:
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, (set, tuple)):
            return list(value)
        return repr(value)

    return json.dumps(data, indent=2, default=plain) + "\n"


def per_class_table(per_image: pd.DataFrame, data: EvaluationSet) -> pd.DataFrame:
    """Errors per ground-truth class, worst first (top-5 localisation error, then GT-known)."""
    df = per_image[per_image["label"].notna()]
    df = df.assign(
        loc_error_top5=~df.loc_rank.between(1, 5),
        cls_error_top5=~df.cls_rank.between(1, 5),
        loc_error_top1=df.loc_rank != 1,
        gt_known_error=df.gt_known_correct != 1.0,
    )
    table = df.groupby("label").agg(
        n_images=("image_id", "size"),
        loc_error_top1=("loc_error_top1", "mean"),
        loc_error_top5=("loc_error_top5", "mean"),
        cls_error_top5=("cls_error_top5", "mean"),
        gt_known_loc_error=("gt_known_error", "mean"),
    )
    table.insert(0, "name", [data.synsets.name(w) if w in data.synsets else w for w in table.index])
    table = table.sort_values(["loc_error_top5", "gt_known_loc_error", "n_images"], ascending=[False, False, False])
    return table.reset_index().rename(columns={"label": "synset"})


def run_headline(summary: Mapping[str, Any]) -> str:
    """One line naming what ran: model, saliency method, crops, box extractor, data."""
    return "This run: " + ", ".join(f"{key} `{summary[key]}`" for key in RUN_KEYS if key in summary) + "."


def report_markdown(summary: Mapping[str, Any], evaluators: Sequence[Evaluator], evaluation: Evaluation,
                    figures: Sequence[str] = ()) -> str:
    """``report.md``: what ran, each evaluator's section (the devkit's beside the paper's rows
    first), then the run's details."""
    lines = ["# Localisation report", ""]
    if any(key in summary for key in RUN_KEYS):
        lines += [run_headline(summary), ""]
    for ev in evaluators:
        name = evaluator_name(ev)
        if name in evaluation.by_metric:
            lines += [*section_of(name).lines(ev, evaluation.by_metric[name]), ""]
    for name, error in evaluation.failed.items():
        lines += [f"Metric `{name}` failed and has no figures: {error}", ""]
    lines += ["## This run", ""]
    lines.append(f"Failed images: {summary['n_failed']} (counted as errors); fallback boxes: "
                 f"{summary['n_fallback_boxes']}  ")
    if summary.get("n_unscored"):
        lines.append(f"Images not scored (unusable ground truth or a size mismatch; listed in per_image.csv): "
                     f"{summary['n_unscored']}  ")
    for name, count in (summary.get("metric_failures") or {}).items():
        lines.append(f"Images whose `{name}` state failed (a miss for that metric; reasons in per_image.csv): "
                     f"{count}  ")
    secs = summary.get("seconds_per_image", {})
    if secs:
        lines.append("Seconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in secs.items() if not np.isnan(v)))
    lines += ["", "Files: `metrics.json`, `predictions.csv`, `per_image.csv` (every guess with its box and IoU), "
              "`per_class.csv` (worst classes first)."]
    paper = [f for f in figures if "paper_figure" in f]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{Path(f).stem}]({f})" for f in paper]
        others = [f for f in figures if f not in paper and not f.endswith("_saliency.png")]
        lines += ["", "Per image: " + ", ".join(f"[{Path(f).stem}]({f})" for f in others)] if others else []
    return "\n".join(lines) + "\n"
