"""How concentrated saliency maps are on the object, from finished runs' cached maps.

For each run folder given (a localisation run whose saliency cache still holds its maps),
for the map of each image's ground-truth class (in the resized frame):

* mass in box: the share of the map's total mass inside the ground-truth boxes of the class;
* box area: the share of the frame those boxes cover (what a uniform map would score);
* ratio: mass in box / box area (1: no better than uniform);
* peak in box: whether the map's maximum lies inside a box (the pointing game, 0 px tolerance);
* top-5% in box: the share of the map's top 5% pixels (the paper's foreground seeds) inside a box.

Printed as means over the tuning images (the first ``--split``) and the confirmation images.

    python bench/map_concentration.py outputs/study/gradient_10 outputs/study/cam_10 --split 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wsol_bench.config import register_configs
from wsol_bench.pipeline.records import OK
from wsol_bench.tasks.figures import load_run


def concentration(saliency: np.ndarray, inside: np.ndarray) -> tuple[float, float, float, float]:
    """``(mass in box, box area, peak in box, top-5% in box)`` of one non-negative map."""
    total = float(saliency.sum())
    mass = float(saliency[inside].sum()) / total if total > 0 else float("nan")
    peak = float(inside.flat[int(np.argmax(saliency))])
    top = saliency >= np.quantile(saliency, 0.95)
    return mass, float(inside.mean()), peak, float(inside[top].mean())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--split", type=int, default=100)
    args = parser.parse_args()
    register_configs()
    print("run | method | model | images | mass in box | box area | ratio | peak in box | top-5% in box")
    for run in args.runs:
        plan, data, records, maps_of = load_run(run)
        rows: list[tuple[int, tuple[float, float, float, float]]] = []
        for record in records:
            if record.status != OK:
                continue
            result = maps_of(record)
            if result is None:
                raise SystemExit(f"{run}: no cached maps for {record.image_id}")
            truth = data.ground_truth[record.image_id]
            saliency = result.maps[list(result.classes).index(data.synsets.index(truth.label))]
            inside = np.zeros(saliency.shape, bool)
            for box in truth.boxes_of(truth.label):
                b = box.scaled((record.height, record.width), saliency.shape)
                inside[b.ymin : b.ymax + 1, b.xmin : b.xmax + 1] = True
            rows.append((record.index, concentration(saliency, inside)))
        halves = [(f"1-{args.split}", [v for i, v in rows if i < args.split]),
                  (f"{args.split + 1}-{len(data.image_ids)}", [v for i, v in rows if i >= args.split])]
        for label, values in halves:
            if not values:
                continue
            a = np.array(values)
            mass, area, peak, top = np.nanmean(a, axis=0)
            print(f"{Path(run).name} | {plan.method.name} | {plan.model.name} | {label} ({len(a)}) | {mass:.3f} | "
                  f"{area:.3f} | {mass / area:.2f} | {peak:.3f} | {top:.3f}")


if __name__ == "__main__":
    main()
