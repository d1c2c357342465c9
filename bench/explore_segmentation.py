"""Fast exploration of segmentation settings on cached saliency maps (GT-known error only).

Reads the saliency cache filled by a localisation run on the same data (same model and
saliency settings), segments only the map of the ground-truth class of each image, and
prints the GT-known localisation error of every setting given. Used to choose which
settings to sweep properly with Hydra multirun (whose tables are the ones in docs/).

    python bench/explore_segmentation.py dataset=shared_sample \
        --grid segmentation.method=threshold segmentation.smooth_sigma=0,8 segmentation.threshold=0.1,0.2
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

from wsol_bench.boxes import boxes_array, iou_inclusive, scale_box  # noqa: E402
from wsol_bench.config import (  # noqa: E402
    DatasetConfig,
    ModelConfig,
    SaliencyConfig,
    SegmentationConfig,
    register_configs,
)
from wsol_bench.data.images import read_rgb  # noqa: E402
from wsol_bench.data.sources import load_evaluation_set  # noqa: E402
from wsol_bench.localisation.run import saliency_namespace  # noqa: E402
from wsol_bench.localisation.saliency_cache import SaliencyCache  # noqa: E402
from wsol_bench.models import build_classifier  # noqa: E402
from wsol_bench.saliency.crops import resize_shorter_side  # noqa: E402
from wsol_bench.segmentation import build_segmenter  # noqa: E402
from wsol_bench.tasks import section  # noqa: E402


def _score(args) -> list[float]:
    settings, items = args
    out = []
    for seg_cfg in settings:
        segmenter = build_segmenter(seg_cfg)
        hits = []
        for resized, gt_map, original, gt_boxes in items:
            prepared = segmenter.prepare(resized)
            box = scale_box(segmenter.localise(prepared, gt_map).box, resized.shape[:2], original)
            hits.append(float(iou_inclusive(np.array(box, float)[None], gt_boxes).max() >= 0.5))
        out.append(hits)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--grid", nargs="+", required=True, help="key=v1,v2 ... (segmentation keys)")
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    register_configs()
    keys, values = zip(*(g.split("=", 1) for g in args.grid))
    grid = list(itertools.product(*(v.split(",") for v in values)))
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=args.overrides)
        settings = [
            section(compose(config_name="config", overrides=[*args.overrides, *(f"{k}={v}" for k, v in zip(keys, c))]),
                    "segmentation", SegmentationConfig)
            for c in grid
        ]
    data = load_evaluation_set(section(cfg, "dataset", DatasetConfig))
    sal = section(cfg, "saliency", SaliencyConfig)
    classifier = build_classifier(section(cfg, "model", ModelConfig))
    cache = SaliencyCache(sal.cache_dir, saliency_namespace(classifier, sal))
    items = []
    for image_id in data.image_ids:
        gt = data.ground_truth[image_id]
        gt_class = data.synsets.index(gt.label)
        res = cache.get(image_id, data.image_paths[image_id], [gt_class])
        if res is None:
            raise SystemExit(f"{image_id}: not in the saliency cache; run the localisation once first")
        rgb = read_rgb(data.image_paths[image_id])
        resized = resize_shorter_side(rgb, sal.resize)
        gt_map = res.maps[list(res.classes).index(gt_class)]
        items.append((resized, gt_map, rgb.shape[:2], boxes_array(b for b in gt.boxes if b.synset == gt.label)))
    start = time.perf_counter()
    chunks = [items[i :: args.processes] for i in range(args.processes)]
    with ProcessPoolExecutor(args.processes) as pool:
        parts = list(pool.map(_score, [(settings, c) for c in chunks]))
    print(f"{len(items)} images, {len(settings)} settings, {time.perf_counter() - start:.0f} s")
    print(" | ".join(keys) + " | GT-known loc. error")
    for j, combo in enumerate(grid):
        hits = [h for part in parts for h in part[j]]
        print(" | ".join(combo) + f" | {1 - np.mean(hits):.3f}")


if __name__ == "__main__":
    main()
