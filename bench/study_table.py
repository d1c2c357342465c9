"""Finished runs' figures on the tuning and the confirmation images separately.

For each run folder: every evaluator of the run re-scored from its records (no saliency,
no segmentation) on images 1..split (tuning) and split+1..end (confirmation), printed as a
Markdown table with 95% Wilson intervals: top-1 and top-5 localisation error, GT-known
localisation error, MaxBoxAccV2 (%) and the pointing game. ``--classification`` adds
the top-5 classification error and a row for all images.

    python bench/study_table.py outputs/study/* --split 100 [--classification]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsol_bench.config import register_configs
from wsol_bench.metrics.ilsvrc import IlsvrcLocalisation
from wsol_bench.metrics.intervals import wilson_interval
from wsol_bench.reports.localisation_report import evaluate_records
from wsol_bench.tasks.figures import load_run


def error(summary: dict, key: str, k: int | None = None) -> str:
    value = summary[key] if k is None else summary[key][k]
    if value is None:
        return "-"
    n = summary["n_images"]
    lo, hi = wilson_interval(value * n, n)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--split", type=int, default=100)
    parser.add_argument("--classification", action="store_true",
                        help="add the top-5 classification error and a row for all images")
    args = parser.parse_args()
    register_configs()
    columns = ["run", "images", "top-1 loc. error", "top-5 loc. error", "GT-known loc. error", "MaxBoxAccV2 (%)",
               "pointing game"] + (["top-5 cls. error"] if args.classification else [])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for run in args.runs:
        plan, data, records, _ = load_run(run)
        evaluators = plan.evaluators or (IlsvrcLocalisation(),)
        n = len(records)
        parts = [(f"1-{args.split}", records[: args.split]), (f"{args.split + 1}-{n}", records[args.split :])]
        if args.classification:
            parts.append((f"1-{n}", records))
        for label, part in parts:
            if not part:
                continue
            summary = evaluate_records(part, data, evaluators).figures
            v2 = f"{summary['maxboxacc_v2']:.1f}" if "maxboxacc_v2" in summary else "-"
            pointing = f"{summary['pointing_game']:.3f}" if "pointing_game" in summary else "-"
            cells = [Path(run).name, label, error(summary, "loc_error_at_k", 0), error(summary, "loc_error_at_k", -1),
                     error(summary, "gt_known_loc_error"), v2, pointing]
            if args.classification:
                cells.append(error(summary, "cls_error_at_k", -1))
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
