"""Benchmark: seconds per image of image saliency (10 crops, top-5), EfficientNet-Lite0, CPU.

Side by side in one run, each implementation in its own worker process (same images, same
torch threads, one untimed warm-up image first), alternated over ``--rounds`` rounds, the
fastest run of each counted:

* ``naive``: one forward pass per crop for the scores, then one forward and one backward
  pass per class per crop (``tests/reference_saliency.py``);
* ``captum``: what a captum user writes: for each class, ``Saliency(model).attribute(crops,
  target=c)`` on the image's 10-crop batch (a forward and a backward per class), then
  ``max`` over colour channels;
* ``exact``: the paper's gradient as the engine runs it (one forward pass of all the crops
  of ``batch_images`` images, one backward pass per class rank from that graph), the model
  unfolded;
* ``folded``: the same with every BatchNorm folded into its convolution
  (:func:`wsol_bench.models.batchnorm.fold_batchnorm`); with the shipped settings
  (``conf/saliency/_crops.yaml``) this is the default;
* with ``--sweep 1 2 4``: ``folded`` at those ``batch_images`` as well (time and memory);
* with ``--channels-last-weights``: ``folded`` with the weights stored channels-last too
  (the input is channels-last on the CPU in every run but ``captum``).

Printed: wall and CPU seconds per image, the speed-up over ``captum``, the peak resident
memory of the worker (``ru_maxrss``: Python, torch, the model and the graph), and each
implementation's largest map difference from ``naive`` (relative to the map's maximum,
with the share of pixels off by more than 0.1% and 1% of it), and whether the classes
agree.

    python bench/saliency.py [--images /work/shared/ilsvrc_val_sample/images] [--max-images 4]
        [--threads 1] [--rounds 2] [--sweep 1 2 4]
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

REPO = Path(__file__).resolve().parent.parent
SHARED_IMAGES = REPO.parent / "shared" / "ilsvrc_val_sample" / "images"
SKIMAGE_NAMES = ("coffee", "chelsea", "astronaut", "rocket")


def shipped_batch_images() -> int:
    from wsol_bench.pipeline.settings import EngineSettings

    return EngineSettings().batch_images


def load_images(folder: str | None, max_images: int, resize: int) -> tuple[list[str], list[np.ndarray]]:
    """The first ``max_images`` JPEGs of ``folder`` (else scikit-image photographs), resized."""
    from wsol_bench.data.images import read_rgb
    from wsol_bench.frames import resize_shorter_side

    if folder:
        paths = sorted(Path(folder).glob("*.JPEG"))[:max_images]
        return [p.name for p in paths], [resize_shorter_side(read_rgb(p), resize) for p in paths]
    from skimage import data

    names = list(SKIMAGE_NAMES[:max_images])
    return names, [resize_shorter_side(getattr(data, n)(), resize) for n in names]


def captum_image_saliency(classifier, image: np.ndarray, settings) -> tuple[np.ndarray, np.ndarray]:
    """Per class, captum's ``Saliency`` on the image's crop batch; the crop maps pasted as the engine does."""
    import torch
    from captum.attr import Saliency

    from wsol_bench.saliency import crop_windows, paste_maps, select_classes
    from wsol_bench.saliency.crops import crop_tensors
    from wsol_bench.saliency.image_saliency import image_tensor

    class Logits(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return classifier.logits(x)

    windows = crop_windows(image.shape[0], image.shape[1], settings.crop, settings.crops)
    crops = torch.stack(crop_tensors(image_tensor(image, classifier.device), windows))
    with torch.no_grad():
        mean_logits = classifier.logits(crops).mean(dim=0).numpy()
    classes = select_classes(mean_logits, settings.top_k, None)
    saliency = Saliency(Logits())
    maps = np.stack([saliency.attribute(crops, target=int(c), abs=True).amax(dim=1).numpy() for c in classes])
    return classes, paste_maps(maps, windows, image.shape[:2])


def worker(args: argparse.Namespace) -> None:
    """Run one implementation; save its maps to ``args.out``; print one JSON line."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    sys.path.insert(0, str(REPO))
    from tests.reference_saliency import naive_image_saliency
    from wsol_bench.models import ModelSpec, build_classifier
    from wsol_bench.models.batchnorm import fold_batchnorm
    from wsol_bench.saliency import CropSettings, image_saliency
    from wsol_bench.saliency.gradient import Gradient

    torch.set_num_threads(args.threads)
    names, images = load_images(args.images, args.max_images, 256)
    classifier = build_classifier(ModelSpec(device="cpu"))
    if args.worker in ("folded", "folded_cl"):
        classifier = fold_batchnorm(classifier, channels_last=args.worker == "folded_cl")
    settings = CropSettings(crops=args.crops, top_k=args.top_k)
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def run(batch: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        if args.worker == "naive":
            return [(r.classes, r.maps) for r in naive_image_saliency(Gradient(), classifier, batch, settings)]
        if args.worker == "captum":
            return [captum_image_saliency(classifier, im, settings) for im in batch]
        return [(r.classes, r.maps) for r in image_saliency(Gradient(), classifier, batch, settings)]

    step = args.batch_images if args.worker in ("exact", "folded", "folded_cl") else 1
    run(images[:1])  # warm-up: allocator, oneDNN primitives
    results, start, cpu = [], time.perf_counter(), time.process_time()
    for i in range(0, len(images), step):
        results += run(images[i : i + step])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    np.savez(args.out, **{f"maps{i}": m for i, (_, m) in enumerate(results)},
             **{f"classes{i}": c for i, (c, _) in enumerate(results)})
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "images": len(images), "names": names,
                      "threads": torch.get_num_threads(), "rss_loaded_kib": rss_loaded,
                      "rss_peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))


def compare(maps: dict[str, np.ndarray], reference: dict[str, np.ndarray], count: int) -> str:
    """Largest difference from the reference maps, relative to each map's maximum."""
    worst, over_1e3, over_1e2, same = 0.0, [], [], True
    for i in range(count):
        a, b = maps[f"maps{i}"], reference[f"maps{i}"]
        same &= bool(np.array_equal(maps[f"classes{i}"], reference[f"classes{i}"]))
        rel = np.abs(a - b) / b.max(axis=(1, 2), keepdims=True)
        worst = max(worst, float(rel.max()))
        over_1e3.append((rel > 1e-3).ravel())
        over_1e2.append((rel > 1e-2).ravel())
    return (f"max {worst:.2e} of the map max; pixels off > 0.1%: {np.concatenate(over_1e3).mean():.3%}, "
            f"> 1%: {np.concatenate(over_1e2).mean():.4%}; same classes: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(SHARED_IMAGES) if SHARED_IMAGES.is_dir() else None,
                        help="folder of *.JPEG images (default: the shared ILSVRC sample, else skimage photos)")
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every worker")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-images", type=int, default=None,
                        help="images per call of exact/folded (default: the shipped engine.batch_images)")
    parser.add_argument("--sweep", type=int, nargs="*", default=[], help="also folded at these batch_images")
    parser.add_argument("--skip-naive", action="store_true", help="compare with captum instead (faster)")
    parser.add_argument("--channels-last-weights", action="store_true", help="also folded with channels-last weights")
    parser.add_argument("--worker", choices=("naive", "captum", "exact", "folded", "folded_cl"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch_images is None:
        args.batch_images = shipped_batch_images()
    if args.worker:
        worker(args)
        return

    runs = [("naive", "naive", 1)] * (not args.skip_naive) + [
        ("captum", "captum", 1), (f"exact   b={args.batch_images}", "exact", args.batch_images),
        (f"folded  b={args.batch_images}", "folded", args.batch_images)]
    runs += [(f"folded  b={b}", "folded", b) for b in args.sweep if b != args.batch_images]
    if args.channels_last_weights:
        runs.append((f"fold+cl b={args.batch_images}", "folded_cl", args.batch_images))
    stats: dict[str, dict] = {}
    maps: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):  # alternate, so every implementation sees the same (shared machine) load
            for label, kind, b in runs:
                out = Path(tmp) / f"{kind}{b}.npz"
                cmd = [sys.executable, __file__, "--worker", kind, "--out", str(out), "--batch-images", str(b),
                       "--max-images", str(args.max_images), "--crops", str(args.crops), "--top-k", str(args.top_k),
                       "--threads", str(args.threads)] + (["--images", args.images] if args.images else [])
                done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
                run = json.loads(done.stdout.strip().splitlines()[-1])
                if label not in stats or run["seconds"] < stats[label]["seconds"]:
                    stats[label] = run
                with np.load(out) as f:
                    maps[label] = {k: f[k] for k in f.files}
    first = next(iter(stats.values()))
    count = first["images"]
    reference = "naive" if "naive" in maps else runs[0][0]
    print(f"efficientnet_lite0 on the CPU, {first['threads']} torch thread(s); {count} images "
          f"({', '.join(first['names'])}); crops={args.crops} top_k={args.top_k}; "
          f"fastest of {args.rounds} alternating runs each; shipped engine.batch_images={shipped_batch_images()}")
    captum = stats["captum"]["seconds"]
    for label, _, _ in runs:
        s = stats[label]
        print(f"{label:12s} {s['seconds'] / count:6.3f} s/image (CPU {s['cpu_seconds'] / count:6.3f}) "
              f"{captum / s['seconds']:5.2f}x captum; peak RSS {s['rss_peak_kib'] / 1024:5.0f} MiB "
              f"(after model load {s['rss_loaded_kib'] / 1024:4.0f})")
    for label, _, _ in runs:
        if label != reference:
            print(f"maps of {label:12s} vs {reference}: {compare(maps[label], maps[reference], count)}")


if __name__ == "__main__":
    main()
