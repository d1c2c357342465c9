"""Fast exploration of box-extractor settings on cached saliency maps (GT-known error only).

Reads the saliency cache filled by a localisation run on the same data (same model, method
and crop settings), localises only the map of the ground-truth class of each image, and
prints the GT-known localisation error of every setting, for the tuning images (the first
``--split``, default 100) and the confirmation images (the rest) separately. Used to choose
which settings to sweep properly with Hydra multirun (whose tables are the ones in docs/).

    python bench/explore_segmentation.py dataset=shared_sample \
        --grid segmentation=threshold segmentation.smooth_sigma=0,8 segmentation.threshold=0.1,0.2
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hydra import compose, initialize_config_dir  # noqa: E402

from wsol_bench.boxes import iou_inclusive  # noqa: E402
from wsol_bench.config import register_configs  # noqa: E402
from wsol_bench.data.images import read_rgb  # noqa: E402
from wsol_bench.data.sources import load_evaluation_set  # noqa: E402
from wsol_bench.files import sha256_file  # noqa: E402
from wsol_bench.frames import resize_shorter_side  # noqa: E402
from wsol_bench.pipeline.engine import Pipeline  # noqa: E402
from wsol_bench.saliency.cache import SaliencyCache  # noqa: E402
from wsol_bench.segmentation import localise_image  # noqa: E402
from wsol_bench.tasks.factory import localisation_plan, resolve_demo  # noqa: E402


def _score(args) -> list[list[float]]:
    extractors, items = args
    out = []
    for extractor in extractors:
        hits = []
        for resized, gt_map, original, gt_boxes in items:
            [box] = localise_image(extractor, resized, [gt_map], original).boxes
            hits.append(float(iou_inclusive(np.array(box.coords, float)[None], gt_boxes).max() >= 0.5))
        out.append(hits)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--grid", nargs="+", required=True, help="key=v1,v2 ... (segmentation keys or group)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--split", type=int, default=100, help="the first N images tune, the rest confirm")
    args = parser.parse_intermixed_args()  # overrides may follow the options
    register_configs()
    keys, values = zip(*(g.split("=", 1) for g in args.grid))
    grid = list(itertools.product(*(v.split(",") for v in values)))
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=args.overrides)
        extractors = [
            localisation_plan(compose(config_name="config",
                                      overrides=[*args.overrides, *(f"{k}={v}" for k, v in zip(keys, c))])).extractor
            for c in grid
        ]
    plan = localisation_plan(cfg)
    data = load_evaluation_set(resolve_demo(plan.dataset))
    pipeline = Pipeline(plan.saliency_classifier(), plan.method, plan.crops, plan.extractor)
    cache = SaliencyCache(plan.engine.cache_dir, pipeline.saliency_namespace())
    items = []
    for image_id in data.image_ids:
        gt = data.ground_truth[image_id]
        gt_class = data.synsets.index(gt.label)
        rgb = read_rgb(data.image_paths[image_id])
        resized = resize_shorter_side(rgb, plan.crops.resize)
        res = cache.get(image_id, sha256_file(data.image_paths[image_id]), [gt_class], resized.shape[:2],
                        plan.crops.top_k)
        if res is None:
            raise SystemExit(f"{image_id}: not in the saliency cache; run the localisation once first")
        gt_map = res.maps[list(res.classes).index(gt_class)]
        items.append((resized, gt_map, rgb.shape[:2], np.array([b.coords for b in gt.boxes_of(gt.label)], float)))
    start = time.perf_counter()
    chunks = [items[i :: args.processes] for i in range(args.processes)]
    with ProcessPoolExecutor(args.processes) as pool:
        parts = list(pool.map(_score, [(extractors, c) for c in chunks]))
    n = len(items)
    halves = (f"1-{min(args.split, n)}", f"{args.split + 1}-{n}") if n > args.split else (f"1-{n}",)
    print(f"{n} images, {len(extractors)} settings, {time.perf_counter() - start:.0f} s")
    print(" | ".join(keys) + " | " + " | ".join(f"GT-known loc. error, images {h}" for h in halves))
    for j, combo in enumerate(grid):
        hits = np.empty(n)
        for i, part in enumerate(parts):
            hits[i :: args.processes] = part[j]
        errors = [1 - hits[: args.split].mean()] + ([1 - hits[args.split :].mean()] if n > args.split else [])
        print(" | ".join(combo) + " | " + " | ".join(f"{e:.3f}" for e in errors))


if __name__ == "__main__":
    main()
