"""Benchmark: seconds per image of image saliency (10 crops, top-5), EfficientNet-Lite0, CPU.

Side by side in one run, each variant in its own worker process (same images, same torch
threads, one untimed warm-up image first), alternated over ``--rounds`` rounds, the fastest
run of each counted:

* ``captum``: what a careful captum user writes: for each class, ``Saliency(model).attribute(
  crops, target=c)`` on the image's 10-crop batch (a forward and a backward pass per class),
  then ``max`` over colour channels; the reference of every ratio;
* ``shipped``: the engine's default (``engine.batch_images``, ``engine.fold_batchnorm``,
  ``engine.pointwise_matmul``: the BatchNorm-folded copy with its 1 x 1 convolutions as
  matrix products; one forward pass, one backward pass per class rank);
* ``folded``: the same without the matrix products (the previous default);
* ``unfolded``: the model as loaded;
* with ``--variants``, also: ``batched``: the folded copy (the matrix-product copy's
  backward cannot run under vmap) with every class rank in one batched backward pass
  (``torch.autograd.grad(..., is_grads_batched=True)``); ``bfloat16``: the shipped copy
  under ``torch.autocast("cpu", torch.bfloat16)``; ``compiled``: the shipped copy's module
  through ``torch.compile`` (its compilation untimed, in the warm-up); ``batch2``: the
  shipped copy with two images per call (20 crops: oneDNN's 1 x 1 kernels).

Printed: wall and CPU seconds per image and peak memory of each variant, each variant's
largest map difference from ``unfolded`` (relative to the map's maximum) and whether the
classes agree, and, last, the shipped default's speed-up over ``captum``.

    python bench/saliency.py [--images ../shared/ilsvrc_val_sample/images] [--max-images 4]
        [--threads 1] [--rounds 2] [--variants batched bfloat16 compiled batch2]
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
BASE = ("captum", "shipped", "folded", "unfolded")
EXTRA = ("batched", "bfloat16", "compiled", "batch2")


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


def batched_gradient():
    """The paper's gradient with every class rank in one batched backward pass."""
    from dataclasses import dataclass

    import torch

    from wsol_bench.saliency.backprop import BackwardStep, check_scores, model_layout
    from wsol_bench.saliency.base import SaliencyMethod, max_abs_over_channels

    class BatchedStep(BackwardStep):
        def maps(self, targets: torch.Tensor) -> torch.Tensor:
            valid = targets >= 0
            onehot = torch.zeros((targets.shape[0], *self.graph_logits.shape))
            onehot.scatter_(2, targets.clamp(min=0)[..., None], valid.float()[..., None])
            (grad,) = torch.autograd.grad(self.graph_logits, self.wrt, onehot, is_grads_batched=True)
            maps = grad.abs().amax(dim=2).float()
            maps[~valid] = 0.0
            return maps

    @dataclass(frozen=True)
    class Batched(SaliencyMethod):
        def forward(self, classifier, crops):
            with torch.enable_grad():
                x = model_layout(crops.detach()).requires_grad_(True)
                logits = classifier.logits(x)
            check_scores(classifier, logits, x.shape[0])
            return BatchedStep(logits, x, max_abs_over_channels, tuple(crops.shape[2:]))

    return Batched()


def worker(args: argparse.Namespace) -> None:
    """Run one variant; save its maps to ``args.out``; print one JSON line."""
    import contextlib
    import warnings
    from dataclasses import replace

    import torch

    from wsol_bench.models import ModelSpec, build_classifier
    from wsol_bench.models.batchnorm import fold_batchnorm
    from wsol_bench.models.pointwise import with_pointwise_matmul
    from wsol_bench.saliency import CropSettings, image_saliency
    from wsol_bench.saliency.gradient import Gradient

    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    torch.set_num_threads(args.threads)
    names, images = load_images(args.images, args.max_images, 256)
    classifier = build_classifier(ModelSpec(device="cpu"))
    if args.worker != "unfolded" and args.worker != "captum":
        classifier = fold_batchnorm(classifier)
    if args.worker not in ("unfolded", "captum", "folded", "batched"):  # vmap cannot run the matmul backward
        classifier = with_pointwise_matmul(classifier)
    if args.worker == "compiled":
        classifier = replace(classifier, module=torch.compile(classifier.module, dynamic=False))
    method = batched_gradient() if args.worker == "batched" else Gradient()
    settings = CropSettings(crops=args.crops, top_k=args.top_k)
    precision = (torch.autocast("cpu", dtype=torch.bfloat16) if args.worker == "bfloat16"
                 else contextlib.nullcontext())
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step = args.batch_images * (2 if args.worker == "batch2" else 1)

    def run(batch: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        if args.worker == "captum":
            return [captum_image_saliency(classifier, im, settings) for im in batch]
        with precision:
            return [(r.classes, r.maps) for r in image_saliency(method, classifier, batch, settings)]

    run(images[:step])  # warm-up: allocator, oneDNN primitives, compilation
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
        if a.shape != b.shape:
            return "other classes (maps not comparable)"
        rel = np.abs(a - b) / b.max(axis=(1, 2), keepdims=True)
        worst = max(worst, float(rel.max()))
        over_1e3.append((rel > 1e-3).ravel())
        over_1e2.append((rel > 1e-2).ravel())
    return (f"max {worst:.2e} of the map max; pixels off > 0.1%: {np.concatenate(over_1e3).mean():.3%}, "
            f"> 1%: {np.concatenate(over_1e2).mean():.4%}; same classes: {same}")


def main() -> None:
    from wsol_bench.pipeline.settings import EngineSettings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default=str(SHARED_IMAGES) if SHARED_IMAGES.is_dir() else None,
                        help="folder of *.JPEG images (default: the shared ILSVRC sample, else skimage photos)")
    parser.add_argument("--max-images", type=int, default=4)
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every worker")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-images", type=int, default=EngineSettings().batch_images)
    parser.add_argument("--variants", nargs="*", default=[], choices=EXTRA)
    parser.add_argument("--worker", choices=(*BASE, *EXTRA), help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    variants = [*BASE, *args.variants]
    stats: dict[str, dict] = {}
    maps: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):  # alternate, so every variant sees the same (shared machine) load
            for kind in variants:
                out = Path(tmp) / f"{kind}.npz"
                cmd = [sys.executable, __file__, "--worker", kind, "--out", str(out), "--batch-images",
                       str(args.batch_images), "--max-images", str(args.max_images), "--crops", str(args.crops),
                       "--top-k", str(args.top_k), "--threads", str(args.threads)]
                cmd += ["--images", args.images] if args.images else []
                done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, cwd=REPO)
                run = json.loads(done.stdout.strip().splitlines()[-1])
                if kind not in stats or run["seconds"] < stats[kind]["seconds"]:
                    stats[kind] = run
                with np.load(out) as f:
                    maps[kind] = {k: f[k] for k in f.files}
    first = next(iter(stats.values()))
    count = first["images"]
    print(f"efficientnet_lite0 on the CPU, {first['threads']} torch thread(s); {count} images "
          f"({', '.join(first['names'])}); crops={args.crops} top_k={args.top_k}; engine.batch_images="
          f"{args.batch_images}; fastest of {args.rounds} alternating runs each")
    captum = stats["captum"]["seconds"]
    for kind in variants:
        s = stats[kind]
        print(f"{kind:9s} {s['seconds'] / count:6.3f} s/image (CPU {s['cpu_seconds'] / count:6.3f}) "
              f"{captum / s['seconds']:5.2f}x captum; peak RSS {s['rss_peak_kib'] / 1024:5.0f} MiB "
              f"(after model load {s['rss_loaded_kib'] / 1024:4.0f})")
    for kind in variants:
        if kind != "unfolded":
            print(f"maps of {kind:9s} vs unfolded: {compare(maps[kind], maps['unfolded'], count)}")
    print(f"shipped default vs captum's per-class call: {captum / stats['shipped']['seconds']:.2f}x")


if __name__ == "__main__":
    main()
