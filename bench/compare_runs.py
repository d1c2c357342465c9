"""Compare two finished runs: are their predictions and figures the same?

Prints whether ``predictions.csv`` is byte-identical, how many guesses differ (class or
box) and where, and every ``metrics.json`` figure that differs (timings, counters of the
rank and the run's description aside), with both values. Used to record that a change of
the code leaves a run's results as they were (README, the closing notes of refactors):

    python bench/compare_runs.py RUN_A RUN_B
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

IGNORED = ("seconds_per_image", "rank0_", "table", "world_size", "failed_metrics", "metric_failures", "model",
           "saliency", "crops", "segmentation", "data")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    same_bytes = (args.a / "predictions.csv").read_bytes() == (args.b / "predictions.csv").read_bytes()
    pa, pb = (pd.read_csv(d / "predictions.csv") for d in (args.a, args.b))
    print(f"predictions.csv byte-identical: {same_bytes}")
    if not same_bytes:
        keys = ["image_id", "rank"]
        merged = pa.merge(pb, on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)
        columns = ["synset", "xmin", "ymin", "xmax", "ymax"]
        differ = merged[(merged._merge != "both") | merged[[f"{c}_a" for c in columns]].ne(
            merged[[f"{c}_b" for c in columns]].values).any(axis=1)]
        moved = differ[differ.synset_a == differ.synset_b]
        print(f"guesses differing: {len(differ)} of {len(merged)} ({len(moved)} boxes moved, same class; "
              f"{len(differ) - len(moved)} other classes or missing)")
        if len(differ):
            print(differ[[*keys, *(f"{c}_{s}" for c in columns for s in "ab")]].to_string(index=False))
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (args.a, args.b))
    keys = sorted(k for k in ma.keys() | mb.keys() if not k.startswith(IGNORED))
    differing = [k for k in keys if ma.get(k) != mb.get(k)]
    print(f"metrics.json figures differing: {len(differing)} of {len(keys)}")
    for k in differing:
        print(f"  {k}: {ma.get(k, '<absent>')} -> {mb.get(k, '<absent>')}")


if __name__ == "__main__":
    main()
