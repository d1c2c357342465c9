"""The reports of a localisation run, written by rank 0 from the merged records.

Files (in the run directory): ``metrics.json``, ``predictions.csv`` (long format),
``predictions.devkit.txt`` (devkit task 2, when ``meta.mat`` is known), ``per_image.csv``,
``per_class.csv`` and ``report.md`` (the run beside the paper's figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from wsol_bench.data.predictions import write_devkit_predictions
from wsol_bench.data.sources import EvaluationSet
from wsol_bench.localisation.records import (
    ImageRecord,
    gt_known_table,
    per_image_table,
    predictions_table,
)
from wsol_bench.metrics.localisation import LocalisationEvaluator, LocalisationMetrics
from wsol_bench.reports.metrics_file import write_metrics

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


def evaluate_records(
    records: Sequence[ImageRecord], predictions: pd.DataFrame, data: EvaluationSet
) -> tuple[LocalisationMetrics, pd.DataFrame]:
    """Score merged records (``predictions``: their long table); failed images count as errors."""
    evaluator = LocalisationEvaluator(data.ground_truth, max_guesses=5)  # the ILSVRC protocol: 5 guesses
    scored = evaluator.accumulate(predictions, [r.image_id for r in records], gt_known_table(records))
    return evaluator.compute(), scored


def write_localisation_report(
    out_dir: Path, records: Sequence[ImageRecord], data: EvaluationSet, description: dict
) -> dict:
    """Write every report file; returns the contents of ``metrics.json``."""
    records = sorted(records, key=lambda r: r.index)
    predictions = predictions_table(records)
    metrics, scored = evaluate_records(records, predictions, data)
    predictions.to_csv(out_dir / "predictions.csv", index=False)
    if data.devkit_meta is not None:
        write_devkit_predictions(out_dir / "predictions.devkit.txt", predictions, [r.image_id for r in records],
                                 data.devkit_meta)
    per_image = per_image_table(records).merge(scored, on="image_id", how="left")
    unscored = pd.DataFrame(
        {"image_id": list(data.unscored), "status": "no_ground_truth", "error": list(data.unscored.values())}
    )
    listed = pd.concat([per_image, unscored], ignore_index=True) if len(unscored) else per_image
    integer_columns = ["index", "width", "height", "n_fallback_boxes", "cls_rank", "loc_rank"]
    listed.astype({c: "Int64" for c in integer_columns}).to_csv(out_dir / "per_image.csv", index=False)
    per_class = per_class_table(per_image, data)
    per_class.to_csv(out_dir / "per_class.csv", index=False)

    ok = per_image[per_image.status == "ok"]
    seconds = {c.removeprefix("seconds_"): float(ok[c].mean()) for c in ok.columns if c.startswith("seconds_")}
    extra = {
        "n_failed": int((per_image.status != "ok").sum()),
        "n_unscored": len(data.unscored),  # images whose ground truth is unusable: reported, not scored
        "n_fallback_boxes": int(per_image["n_fallback_boxes"].sum()),
        "seconds_per_image": seconds,
        **description,
    }
    result = write_metrics(out_dir / "metrics.json", metrics, **extra)
    (out_dir / "report.md").write_text(report_markdown(metrics, extra), encoding="utf-8")
    return result


def per_class_table(per_image: pd.DataFrame, data: EvaluationSet) -> pd.DataFrame:
    """Errors per ground-truth class (WNID order of appearance sorted)."""
    df = per_image.assign(
        loc_error_top5=~per_image.loc_rank.between(1, 5),
        cls_error_top5=~per_image.cls_rank.between(1, 5),
        loc_error_top1=per_image.loc_rank != 1,
        gt_known_error=per_image.gt_known_correct != 1.0,
    )
    table = df.groupby("label").agg(
        n_images=("image_id", "size"),
        loc_error_top1=("loc_error_top1", "mean"),
        loc_error_top5=("loc_error_top5", "mean"),
        cls_error_top5=("cls_error_top5", "mean"),
        gt_known_loc_error=("gt_known_error", "mean"),
    )
    table.insert(0, "name", [data.synsets.name(w) if w in data.synsets else w for w in table.index])
    return table.reset_index().rename(columns={"label": "synset"})


def report_markdown(metrics: LocalisationMetrics, extra: dict) -> str:
    """``report.md``: the run's row beside the paper's rows, then the run's details."""
    lo, hi = metrics.loc_error_ci95[-1]
    run_row = (
        f"| this run: {extra.get('segmentation', '?')} | {extra.get('data', '?')} ({metrics.n_images} images) "
        f"| {extra.get('model', '?')} | {metrics.loc_error_at_k[-1]:.3f} [{lo:.3f}, {hi:.3f}] |"
    )
    lines = [
        "# Localisation report",
        "",
        "Top-5 localisation error (ILSVRC protocol: right class among 5 guesses with IoU >= 0.5; 95% Wilson interval).",
        "The paper's rows are on a different split and model; they are context, not a like-for-like comparison.",
        "",
        "| method | data | model | top-5 loc. error |",
        "|---|---|---|---|",
        run_row,
        *(f"| {r['method']} | {r['data']} | {r['model']} | {r['top5_loc_error']:.3f} |" for r in PAPER_ROWS),
        "",
        "## This run",
        "",
        "| k | 1 | 2 | 3 | 4 | 5 |",
        "|---|---|---|---|---|---|",
        "| localisation error | " + " | ".join(f"{e:.4f}" for e in metrics.loc_error_at_k) + " |",
        "| classification error | " + " | ".join(f"{e:.4f}" for e in metrics.cls_error_at_k) + " |",
        "",
    ]
    if metrics.gt_known_loc_error is not None:
        glo, ghi = metrics.gt_known_loc_error_ci95
        lines.append(f"GT-known localisation error: {metrics.gt_known_loc_error:.4f} [{glo:.4f}, {ghi:.4f}]  ")
    lines.append(f"Failed images: {extra['n_failed']} (counted as errors); fallback boxes: {extra['n_fallback_boxes']}  ")
    if extra.get("n_unscored"):
        lines.append(f"Images with unusable ground truth (listed in per_image.csv, not scored): {extra['n_unscored']}  ")
    secs = extra.get("seconds_per_image", {})
    if secs:
        lines.append("Seconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in secs.items() if not np.isnan(v)))
    return "\n".join(lines) + "\n"
