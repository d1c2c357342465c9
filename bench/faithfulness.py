"""Benchmark: seconds per image of the faithfulness kernels, EfficientNet-Lite0 on the CPU.

One 224 x 224 image (the centre crop of the first ILSVRC sample image, else scikit-image's
``chelsea``), one map (the gradient saliency of the top-1 class, ``max |d logit / d x|``
over channels, scaled to ``[0, 1]``), the shipped Lite0 weights (random ones when the
weights package is missing), ``--threads`` torch threads (default 1). Timed, the fastest
of ``--rounds`` runs after one untimed warm-up:

* ``road``: :func:`wsol_bench.metrics.road.road`, 18 imputations (MoRF and LeRF at the
  percentiles 10 .. 90) and one batched forward pass of the image and its imputations,
  on the normalised image through ``classifier.module``; its imputations alone too;
* ``grad-cam road``: pytorch-grad-cam 1.5.7's ``ROADCombined`` on the same tensor, map and
  module (skipped when not installed), after ``torch.manual_seed`` with the same seed, and
  the two scores side by side; its 18 imputations alone too;
* ``deletion + insertion``: :func:`wsol_bench.metrics.perturbation.perturbation_curve`,
  56 steps each (57 forward passes each, batches of ``--batch-size``), RISE's substrates
  (``mean`` for deletion, ``blur`` for insertion) through ``classifier.logits``.

    python bench/faithfulness.py [--rounds 3] [--threads 1] [--batch-size 4]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED_IMAGES = REPO.parent / "shared" / "ilsvrc_val_sample" / "images"


def load_image() -> tuple[str, np.ndarray]:
    """``(name, 224 x 224 x 3 uint8)``: the centre crop of the shorter side resized to 256."""
    from wsol_bench.data.images import read_rgb
    from wsol_bench.frames import resize_shorter_side

    paths = sorted(SHARED_IMAGES.glob("*.JPEG"))
    if paths:
        name, image = paths[0].name, read_rgb(paths[0])
    else:
        from skimage import data

        name, image = "chelsea", data.chelsea()
    image = resize_shorter_side(image, 256)
    y, x = (image.shape[0] - 224) // 2, (image.shape[1] - 224) // 2
    return name, np.ascontiguousarray(image[y:y + 224, x:x + 224])


def fastest(fn, rounds: int) -> tuple[float, object]:
    """Minimum wall seconds of ``rounds`` calls of ``fn`` after one warm-up call, and its last result."""
    result = fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=4)  # the fastest per image on one CPU thread
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(REPO))
    from wsol_bench.metrics.perturbation import auc, perturbation_curve, rise_baseline
    from wsol_bench.metrics.road import road, road_imputations
    from wsol_bench.models import ModelSpec, build_classifier

    torch.set_num_threads(args.threads)
    try:
        classifier, weights = build_classifier(ModelSpec(device="cpu")), "shipped"
    except FileNotFoundError:
        classifier, weights = build_classifier(ModelSpec(device="cpu", weights="random")), "random"
    name, picture = load_image()
    image = torch.from_numpy(picture).permute(2, 0, 1).float() / 255
    x = image[None].clone().requires_grad_(True)
    logits = classifier.logits(x)
    target = int(logits.argmax())
    logits[0, target].backward()
    saliency = x.grad[0].abs().amax(dim=0).numpy()
    saliency = (saliency / saliency.max()).astype(np.float32)
    normalised = classifier.normalise(image[None])[0]
    print(f"image {name} 224x224, {classifier.name} ({weights} weights), class {target}, "
          f"{torch.get_num_threads()} torch thread(s), fastest of {args.rounds} rounds")

    rows = []
    t_road, result = fastest(lambda: road(classifier.module, normalised, saliency, target, generator=args.seed,
                                          batch_size=args.batch_size), args.rounds)
    rows.append(("road (18 imputations + 19 forward passes)", t_road, f"combined {result.combined:+.6f}"))

    def imputations() -> None:
        road_imputations(normalised, saliency, "lerf", generator=args.seed)
        road_imputations(normalised, saliency, "morf", generator=args.seed)

    t_imputations = fastest(imputations, args.rounds)[0]
    rows.append(("  of which the 18 imputations", t_imputations, ""))
    try:
        from pytorch_grad_cam.metrics.road import ROADCombined
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    except ImportError:
        rows.append(("grad-cam road", float("nan"), "not installed: pip install --no-deps grad-cam==1.5.7 ttach"))
    else:
        def grad_cam_road() -> float:
            torch.manual_seed(args.seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(ROADCombined()(normalised[None], saliency[None], [ClassifierOutputSoftmaxTarget(target)],
                                            classifier.module)[0])

        t_gc, combined = fastest(grad_cam_road, args.rounds)
        rows.append(("grad-cam road (ROADCombined, 36 forward passes)", t_gc,
                     (f"combined {combined:+.6f} (difference {abs(combined - result.combined):.1e}); "
                      f"{t_gc / t_road:.1f}x the time")))

        from pytorch_grad_cam.metrics.perturbation_confidence import (
            RemoveLeastRelevantFirst,
            RemoveMostRelevantFirst,
        )
        from pytorch_grad_cam.metrics.road import NoisyLinearImputer

        def grad_cam_imputations() -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for remove in (RemoveLeastRelevantFirst, RemoveMostRelevantFirst):
                    for p in range(10, 100, 10):
                        remove(p, NoisyLinearImputer())(normalised, torch.from_numpy(saliency))

        t_gc_imp = fastest(grad_cam_imputations, args.rounds)[0]
        rows.append(("  of which the 18 imputations", t_gc_imp, f"{t_gc_imp / t_imputations:.1f}x the time"))

    def curves() -> tuple[float, float]:
        out = []
        for mode in ("deletion", "insertion"):
            baseline = rise_baseline(mode, image, classifier.mean, classifier.std)
            out.append(auc(perturbation_curve(classifier.logits, image, saliency, target, mode, baseline,
                                              n_steps=56, batch_size=args.batch_size)))
        return out[0], out[1]

    t_curves, (deletion, insertion) = fastest(curves, args.rounds)
    rows.append(("deletion + insertion (56 steps each, 114 forward passes)", t_curves,
                 f"AUC deletion {deletion:.4f}, insertion {insertion:.4f}"))
    width = max(len(r[0]) for r in rows)
    for label, seconds, note in rows:
        print(f"{label:<{width}}  {seconds:7.3f} s  {note}")


if __name__ == "__main__":
    main()
