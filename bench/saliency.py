"""Benchmark: batched image saliency vs the naive loop, EfficientNet-Lite0 on the CPU.

Real photographs (``skimage.data``: coffee, chelsea, astronaut, rocket, the left view of
stereo_motorcycle; plus ``--images DIR`` JPEGs, e.g. ``/work/shared/ilsvrc_val_sample/images``)
are resized to shorter side 256. Each implementation runs in its own worker process
(same model, same threads) after one untimed warm-up call:

* ``batched``: :func:`wsol_bench.saliency.gradient.image_saliency`, ``--batch-images``
  images per call (one forward of all their crops, one backward per class rank);
* ``naive``: :func:`wsol_bench.saliency.gradient.naive_image_saliency` (one forward per
  crop for the scores, then one forward+backward per class per crop).

Printed: seconds per image of each (wall and CPU time), the speed-up, the max and mean abs
difference between the maps (with the max map value for scale, and the share of pixels off
by more than 1e-3 of their map's maximum: float32 rounding flips a few ReLU6 units near
their thresholds; a float64 reference differs from *both* float32 results by as much),
whether the classes agree, and peak memory = the worker's
``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak resident set size of the whole
process: Python, torch, the model, activations), also after loading, before any saliency.

Expect about 2x, not more, on a CPU: per crop the naive loop costs ``F + K (F + B)`` and
the batched one ``F' + K B'`` (F/B: forward/input-gradient backward, about equal; primes:
per crop at batch size), i.e. ``(1 + 2K) / (1 + K)`` = 1.8x for K = 5 times what batching
gains per crop, which on a CPU is little. With 2 threads on a machine that other jobs
keep busy, the naive loop's many tiny ops stall on thread barriers and its time balloons;
``--threads 1`` gives the fair comparison there. ``--malloc heap`` removes the page faults
of the batched run's large (> 32 MiB) blocks (see ``use_heap_for_large_allocations``).

    .venv/bin/python bench/saliency.py [--images DIR --max-images 8] [--batch-images 4] [--threads 1]
        [--malloc heap]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SKIMAGE_NAMES = ("coffee", "chelsea", "astronaut", "rocket", "stereo_motorcycle")


def load_images(extra_dir: str | None, max_images: int, resize: int) -> tuple[list[str], list[np.ndarray]]:
    """Names and resized ``H x W x 3`` uint8 RGB images (skimage photos, then ``extra_dir``'s JPEGs)."""
    from PIL import Image
    from skimage import data

    from wsol_bench.saliency.crops import resize_shorter_side

    names, images = [], []
    for name in SKIMAGE_NAMES:
        im = getattr(data, name)()
        if isinstance(im, tuple):  # stereo_motorcycle: (left, right, disparity)
            im = im[0]
        names.append(name)
        images.append(resize_shorter_side(im, resize))
    if extra_dir:
        for p in sorted(Path(extra_dir).glob("*.JPEG")) + sorted(Path(extra_dir).glob("*.jpg")):
            with Image.open(p) as f:
                names.append(p.name)
                images.append(resize_shorter_side(np.asarray(f.convert("RGB")), resize))
    return names[:max_images], images[:max_images]


def worker(args: argparse.Namespace) -> None:
    """Run one implementation; write its maps to ``args.out`` and print one JSON line."""
    import torch

    from wsol_bench.config import ModelConfig
    from wsol_bench.models import build_classifier
    from wsol_bench.saliency.gradient import image_saliency, naive_image_saliency, use_heap_for_large_allocations

    if args.malloc == "heap" and not use_heap_for_large_allocations():
        raise SystemExit("--malloc heap needs glibc")
    if args.threads:
        torch.set_num_threads(args.threads)
    names, images = load_images(args.images, args.max_images, args.resize)
    classifier = build_classifier(ModelConfig(name="efficientnet_lite0", device="cpu"))
    kw = dict(crop=args.crop, crops=args.crops, top_k=args.top_k)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.worker == "batched":
        def run(batch: list[np.ndarray]) -> list:
            return image_saliency(classifier, batch, grad_mode=args.grad_mode, **kw)
        step = args.batch_images
    else:
        def run(batch: list[np.ndarray]) -> list:
            return naive_image_saliency(classifier, batch, **kw)
        step = 1
    run([images[0]][:1])  # warm-up (allocator, oneDNN primitives)
    results, start, cpu = [], time.perf_counter(), time.process_time()
    for i in range(0, len(images), step):
        results += run(images[i : i + step])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.savez(args.out, **{f"maps{i}": r.maps for i, r in enumerate(results)},
             **{f"classes{i}": r.classes for i, r in enumerate(results)})
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "images": len(images), "names": names,
                      "threads": torch.get_num_threads(), "rss_loaded_kib": rss_loaded, "rss_peak_kib": rss_peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder of extra *.JPEG images (e.g. /work/shared/ilsvrc_val_sample/images)")
    parser.add_argument("--max-images", type=int, default=5)
    parser.add_argument("--batch-images", type=int, default=4, help="images per image_saliency call")
    parser.add_argument("--resize", type=int, default=256)
    parser.add_argument("--crop", type=int, default=224)
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--grad-mode", default="loop", choices=("loop", "vmap"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--malloc", default="default", choices=("default", "heap"),
                        help="heap: use_heap_for_large_allocations() in both workers (no mmap page faults)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate batched and naive workers this many times; the fastest run of each counts")
    parser.add_argument("--worker", choices=("batched", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    stats: dict[str, dict] = {}
    maps: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):  # alternate, so both see the same (shared machine) load
            for kind in ("batched", "naive"):
                out = Path(tmp) / f"{kind}.npz"
                cmd = [sys.executable, __file__, "--worker", kind, "--out", str(out)]
                for flag in ("images", "max_images", "batch_images", "resize", "crop", "crops", "top_k",
                             "grad_mode", "threads", "malloc"):
                    value = getattr(args, flag)
                    if value is not None:
                        cmd += [f"--{flag.replace('_', '-')}", str(value)]
                done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
                run = json.loads(done.stdout.strip().splitlines()[-1])
                if kind not in stats or run["seconds"] < stats[kind]["seconds"]:
                    stats[kind] = run
                with np.load(out) as f:
                    maps[kind] = {k: f[k] for k in f.files}
    b, n = stats["batched"], stats["naive"]
    count = b["images"]
    diffs = [np.abs(maps["batched"][f"maps{i}"] - maps["naive"][f"maps{i}"]) for i in range(count)]
    tops = [maps["naive"][f"maps{i}"].max(axis=(1, 2), keepdims=True) for i in range(count)]
    diff, scale = max(float(d.max()) for d in diffs), max(float(t.max()) for t in tops)
    mean_diff = float(np.mean([d.mean() for d in diffs]))
    off = float(np.mean(np.concatenate([(d > 1e-3 * t).ravel() for d, t in zip(diffs, tops)])))
    same = all(np.array_equal(maps["batched"][f"classes{i}"], maps["naive"][f"classes{i}"]) for i in range(count))
    print(f"efficientnet_lite0, CPU, torch threads {b['threads']}; {count} images ({', '.join(b['names'])}); "
          f"crops={args.crops} crop={args.crop} top_k={args.top_k}; batched: {args.batch_images} images per call, "
          f"grad_mode={args.grad_mode}")
    print(f"malloc={args.malloc}; fastest of {args.rounds} alternating runs each")
    print(f"batched: {b['seconds'] / count:.3f} s/image (CPU time {b['cpu_seconds'] / count:.3f} s/image)")
    print(f"naive:   {n['seconds'] / count:.3f} s/image (CPU time {n['cpu_seconds'] / count:.3f} s/image)")
    print(f"speed-up: {n['seconds'] / b['seconds']:.2f}x wall, {n['cpu_seconds'] / b['cpu_seconds']:.2f}x CPU time")
    print(f"max |batched - naive| over maps: {diff:.3e} (max map value {scale:.3e}), mean {mean_diff:.2e}; "
          f"pixels off by > 1e-3 x their map's max: {off:.4%}; same classes: {same}")
    print("peak memory (ru_maxrss of the worker process, MiB): "
          f"batched {b['rss_peak_kib'] / 1024:.0f} (after model load {b['rss_loaded_kib'] / 1024:.0f}), "
          f"naive {n['rss_peak_kib'] / 1024:.0f} (after model load {n['rss_loaded_kib'] / 1024:.0f})")


if __name__ == "__main__":
    main()
