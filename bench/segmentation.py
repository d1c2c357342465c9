"""Benchmark: milliseconds per (image, class) of the saliency-driven segmenters on one CPU core.

Real photographs from ``skimage.data`` resized to a shorter side of ``--shorter`` pixels
(256: the saliency frame), each with ``--classes`` synthetic class maps (the image's
blurred gradient magnitude times a Gaussian blob at a different place per class, plus a
little noise). ``prepare`` (once per image) and ``localise`` (once per class) are timed
separately; the amortised figure is ``prepare / classes + localise``.

    OMP_NUM_THREADS=1 .venv/bin/python bench/segmentation.py [--methods graphcut grabcut]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy/OpenCV load their thread pools

import argparse
import cProfile
import pstats
import statistics
import time

import cv2
import numpy as np
from skimage import data
from threadpoolctl import threadpool_limits

from wsol_bench.boxes import iou_inclusive
from wsol_bench.segmentation import BoxExtractor, box_extractor

IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "stereo_motorcycle")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def load_image(name: str, shorter: int) -> np.ndarray:
    """An ``skimage.data`` RGB photo resized (area) to the given shorter side."""
    image = getattr(data, name)()
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    h, w = image.shape[:2]
    scale = shorter / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA))


def class_maps(image: np.ndarray, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` saliency-like maps: blurred gradient magnitude times an off-centre blob."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    grad = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    grad = cv2.GaussianBlur(grad, (0, 0), 2.0)
    h, w = grey.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    rng = np.random.default_rng(seed)
    maps = []
    for c in range(count):
        cy = h * (0.5 + 0.2 * np.sin(2.4 * c))
        cx = w * (0.5 + 0.2 * np.cos(2.4 * c))
        sigma = min(h, w) * (0.15 + 0.05 * (c % 3))
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        noise = rng.uniform(0, 0.05 * float(grad.max()), (h, w)).astype(np.float32)
        maps.append(grad * blob + noise)
    return maps


def bench(
    segmenter: BoxExtractor, images: list[np.ndarray], maps: list[list[np.ndarray]], repeats: int
) -> tuple[dict[str, float], list[tuple[int, int, int, int]]]:
    """Timings and the boxes, in (image, class) order.

    Each call is timed ``repeats`` times, with ``clock`` (wall: ``time.perf_counter``; cpu:
    ``time.process_time``, which leaves out time the process spent waiting for a busy CPU);
    the median per call is kept, then averaged over images (prepare) or (image, class)
    pairs (localise)."""
    timings: dict[str, dict[str, list[float]]] = {c: {"prepare": [], "localise": []} for c in CLOCKS}
    boxes = []
    for image, image_maps in zip(images, maps):
        p_times = {c: [] for c in CLOCKS}
        l_times = {c: [[] for _ in image_maps] for c in CLOCKS}
        for rep in range(repeats):
            t0 = {c: f() for c, f in CLOCKS.items()}
            prepared = segmenter.prepare(image)
            for c, f in CLOCKS.items():
                p_times[c].append(f() - t0[c])
            for k, sal in enumerate(image_maps):
                t0 = {c: f() for c, f in CLOCKS.items()}
                loc = segmenter.localise(prepared, sal)
                for c, f in CLOCKS.items():
                    l_times[c][k].append(f() - t0[c])
                if rep == 0:
                    boxes.append(loc.box.coords)
        for c in CLOCKS:
            timings[c]["prepare"].append(1000 * statistics.median(p_times[c]))
            timings[c]["localise"].extend(1000 * statistics.median(t) for t in l_times[c])
    classes = len(maps[0])
    result: dict[str, float] = {}
    for c in CLOCKS:
        prepare = statistics.mean(timings[c]["prepare"])
        localise = statistics.mean(timings[c]["localise"])
        result[f"{c}_prepare"] = prepare
        result[f"{c}_localise"] = localise
        result[f"{c}_localise_max"] = max(timings[c]["localise"])
        result[f"{c}_amortised"] = prepare / classes + localise
    return result, boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=["graphcut", "grabcut"])
    parser.add_argument("--shorter", type=int, default=256, help="shorter side of the frame (pixels)")
    parser.add_argument("--classes", type=int, default=5, help="class maps per image")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per call (median kept)")
    parser.add_argument("--max-side", type=int, nargs="*", default=[],
                        help="also time these segmentation.max_side values (box IoU vs max_side=None)")
    parser.add_argument("--profile", action="store_true", help="cProfile one pass of each method")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    cv2.setNumThreads(1)
    with threadpool_limits(limits=1):
        images = [load_image(name, args.shorter) for name in IMAGES]
        maps = [class_maps(image, args.classes, seed=i) for i, image in enumerate(images)]
        sizes = ", ".join(f"{n} {im.shape[1]}x{im.shape[0]}" for n, im in zip(IMAGES, images))
        print(f"images (W x H): {sizes}; {args.classes} classes each; 1 core; median of {args.repeats} runs")
        if hasattr(os, "getloadavg"):
            print(f"load average at start: {os.getloadavg()[0]:.2f}")
        for method in args.methods:
            reference: list[tuple[int, int, int, int]] = []
            for max_side in [None, *args.max_side]:
                segmenter = box_extractor(method, max_side=max_side)
                result, boxes = bench(segmenter, images, maps, args.repeats)
                if max_side is None:
                    reference, agreement = boxes, ""
                else:
                    ious = iou_inclusive(np.array(boxes, float), np.array(reference, float))
                    agreement = f" | box IoU vs full frame: mean {ious.mean():.3f}, min {ious.min():.3f}"
                for c in CLOCKS:
                    print(
                        f"{method:9s} max_side={str(max_side):4s} {c:4s} prepare {result[c + '_prepare']:6.1f} "
                        f"ms/image | localise {result[c + '_localise']:6.1f} ms/class "
                        f"(max {result[c + '_localise_max']:6.1f}) | "
                        f"amortised {result[c + '_amortised']:6.1f} ms per (image, class){agreement}"
                    )
                if args.profile:
                    profiler = cProfile.Profile()
                    profiler.enable()
                    bench(segmenter, images, maps, 1)
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
