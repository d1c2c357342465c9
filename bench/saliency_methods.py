"""Benchmark: every saliency method on EfficientNet-Lite0, one CPU thread.

The first ``--images`` JPEGs of ``--image-dir`` (default ``../shared/ilsvrc_val_sample/images``)
are read with :func:`wsol_bench.data.images.read_rgb` and resized to shorter side 256
(:func:`wsol_bench.frames.resize_shorter_side`). Each method then runs
:func:`wsol_bench.saliency.image_saliency` on all of them in one call (``--crops`` crops,
``--top-k`` classes), after one untimed warm-up call of the paper's gradient.

Printed per method: seconds per image (wall clock and process CPU time) and the passes
through the model per image, counted by hooks on ``classifier.module``:

* forward passes: a forward hook adds the batch size of every call (with or without
  gradients), i.e. one per network input;
* backward passes: the same hook puts a tensor hook on the module's output (when it
  requires gradients), which adds the batch size every time a gradient arrives at the
  logits, i.e. one per network input and backward pass, however deep it goes (Grad-CAM's
  stop at the target layer; rows without a class count too).

SmoothGrad (the gradient in the noise tunnel) and integrated gradients cost ``n_samples`` /
``n_steps`` times the gradient's passes: the default run uses 8 of each
(``--smoothgrad-samples``, ``--ig-steps``; the methods' defaults are 25 and 32). The
integrated-gradients completeness gap
(:meth:`~wsol_bench.saliency.integrated_gradients.IntegratedGradients.completeness`, as
captum's convergence delta: sum of attributions minus ``S_c(x) - S_c(black)``) is printed
for the centre crop of each image and its top class, for each of ``--gap-steps``.

``--per-rank`` also times gradient x input, Grad-CAM and integrated gradients called once per
class rank (one forward pass each, as a loop over captum calls does) against the methods'
shared forward pass.

    /work/venv-methods/bin/python bench/saliency_methods.py [--images 2] [--smoothgrad-samples 25 --ig-steps 32]
        [--per-rank] [--methods gradient cam ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
METHODS = ("gradient", "gradient_x_input", "guided_backprop", "gradcam", "cam", "smoothgrad", "integrated_gradients")


class PassCounter:
    """Forward and backward passes through ``module``, in network inputs (see the module doc)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.forward = self.backward = 0
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, _module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        n = inputs[0].shape[0]
        self.forward += n
        if output.requires_grad:
            output.register_hook(self._count_backward)

    def _count_backward(self, grad: torch.Tensor) -> None:
        self.backward += grad.shape[0]

    def reset(self) -> None:
        self.forward = self.backward = 0

    def remove(self) -> None:
        self._handle.remove()


def per_rank(method):
    """``method`` called once per class rank (a forward pass each, as a captum user's loop does)."""
    from dataclasses import dataclass

    from wsol_bench.saliency import TargetwiseMethod, attribution_maps

    @dataclass(frozen=True)
    class PerRank(TargetwiseMethod):
        def attribute(self, classifier, crops, targets):
            return attribution_maps(method, classifier, crops, targets)

    return PerRank()


def load_images(directory: Path, count: int) -> tuple[list[str], list[np.ndarray]]:
    from wsol_bench.data.images import read_rgb
    from wsol_bench.frames import resize_shorter_side

    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))[:count]
    if len(paths) < count:
        raise SystemExit(f"{directory}: {len(paths)} images, {count} asked for")
    return [p.name for p in paths], [resize_shorter_side(read_rgb(p), 256) for p in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-dir", type=Path, default=REPO.parent / "shared" / "ilsvrc_val_sample" / "images")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--crops", type=int, default=10)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--smoothgrad-samples", type=int, default=8, help="n_samples (the method's default: 25)")
    parser.add_argument("--ig-steps", type=int, default=8, help="n_steps (the method's default: 32)")
    parser.add_argument("--gap-steps", type=int, nargs="*", default=[8, 32], help="n_steps for the IG completeness gap")
    parser.add_argument("--per-rank", action="store_true", help="also time captum's one-call-per-class-rank path")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from wsol_bench.models import ModelSpec, build_classifier
    from wsol_bench.saliency import CropSettings, image_saliency, saliency_method
    from wsol_bench.saliency.image_saliency import image_tensor
    from wsol_bench.saliency.integrated_gradients import IntegratedGradients

    torch.set_num_threads(args.threads)
    names, images = load_images(args.image_dir, args.images)
    classifier = build_classifier(ModelSpec(name="efficientnet_lite0", device="cpu"))
    settings = CropSettings(crops=args.crops, top_k=args.top_k)
    params = {"smoothgrad": {"noise_tunnel": {"n_samples": args.smoothgrad_samples}},
              "integrated_gradients": {"n_steps": args.ig_steps}}

    def method_of(name: str):
        return saliency_method("gradient" if name == "smoothgrad" else name, **params.get(name, {}))

    print(f"efficientnet_lite0 (default weights), CPU, torch threads {torch.get_num_threads()}; {len(images)} images "
          f"({', '.join(names)}), shorter side 256, crops={args.crops}, crop=224, top_k={args.top_k}; "
          "all images in one image_saliency call")
    image_saliency(saliency_method("gradient"), classifier, images[:1], settings)  # warm-up

    counter = PassCounter(classifier.module)
    runs = [(name, method_of(name), "shared forward") for name in args.methods]
    if args.per_rank:
        runs += [(name, per_rank(method_of(name)), "forward per rank")
                 for name in ("gradient_x_input", "gradcam", "integrated_gradients") if name in args.methods]
    header = (f"{'method':22} {'parameters':14} {'path':16} {'s/image':>8} {'CPU s/image':>11} {'fwd/image':>9} "
              f"{'bwd/image':>9}")
    print(header)
    print("-" * len(header))
    for name, method, path in runs:
        counter.reset()
        start, cpu = time.perf_counter(), time.process_time()
        image_saliency(method, classifier, images, settings)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        own = params.get(name, {})
        shown = " ".join(f"{k}={v}" for k, v in (own.get("noise_tunnel") or own).items()) or "-"
        n = len(images)
        print(f"{name:22} {shown:14} {path:16} {seconds / n:8.2f} {cpu / n:11.2f} {counter.forward / n:9.0f} "
              f"{counter.backward / n:9.0f}")
    counter.remove()

    if args.gap_steps:
        crops = []
        for image in images:
            t = image_tensor(image, classifier.device)
            y, x = (t.shape[1] - settings.crop) // 2, (t.shape[2] - settings.crop) // 2
            crops.append(t[:, y : y + settings.crop, x : x + settings.crop])
        batch = torch.stack(crops)
        with torch.no_grad():
            top = classifier.logits(batch).argmax(1)
        print("\nintegrated gradients completeness, centre crop of each image, its top class "
              "(captum's convergence delta)")
        for steps in args.gap_steps:
            change, gap = IntegratedGradients(n_steps=steps).completeness(classifier, batch, top)
            rel = (gap.abs() / change.abs()).numpy()
            print(f"n_steps={steps:3d}: S(x) - S(black) = {', '.join(f'{c:.3f}' for c in change.numpy())}; "
                  f"gap = {', '.join(f'{g:+.4f}' for g in gap.numpy())}; |gap| / |S(x) - S(black)| = "
                  f"{', '.join(f'{r:.2%}' for r in rel)}")


if __name__ == "__main__":
    main()
