"""Shared by the gradient-based methods: several class ranks from one forward pass.

``targets`` here is ``(K, N)`` int64: ``targets[k, n]`` the class of rank ``k`` for crop
``n``, ``-1`` where crop ``n`` needs no map of rank ``k``. One forward pass builds the graph;
each rank then costs one backward pass through it (captum's attributions recompute the
forward pass for every target). Gradients flow only to the tensor asked for: parameters' ``.grad`` is never
touched.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from wsol_bench.models import Classifier
from wsol_bench.saliency.base import TargetChooser


def model_layout(x: torch.Tensor) -> torch.Tensor:
    """On the CPU, a channels-last copy of the ``(N, 3, H, W)`` batch: oneDNN then runs the
    convolutions (and their backward) in NHWC without layout reorders (measured on
    EfficientNet-Lite0, 1 thread: 15-25% less CPU time per crop). Values are unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def clean_scores(classifier: Classifier, crops: torch.Tensor) -> torch.Tensor:
    """``(N, C)`` float32 logits of the crops, without gradients (methods whose maps need
    other forward passes than the scores' one)."""
    with torch.no_grad():
        logits = classifier.logits(model_layout(crops.detach())).float()
    check_scores(classifier, logits, crops.shape[0])
    return logits


def check_scores(classifier: Classifier, logits: torch.Tensor, n: int) -> None:
    """``logits`` must be ``(n, num_classes)``."""
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ValueError(f"{classifier.name}: expected ({n}, num_classes) scores, got {tuple(logits.shape)}")


def rank_gradients(
    logits: torch.Tensor, wrt: torch.Tensor, targets: torch.Tensor
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(k, d(sum_n logits[n, targets[k, n]]) / d wrt)`` for each rank ``k`` with a target.

    One backward pass per rank through the graph of ``logits`` (kept until the last rank);
    rows whose target is ``-1`` contribute nothing; ranks without any target are skipped.
    """
    targets = targets.to(logits.device)
    valid = targets >= 0
    onehot = torch.zeros((targets.shape[0], *logits.shape), dtype=logits.dtype, device=logits.device)
    onehot.scatter_(2, targets.clamp(min=0)[..., None], valid.to(logits.dtype)[..., None])
    ranks = [k for k in range(targets.shape[0]) if bool(valid[k].any())]
    for i, k in enumerate(ranks):
        (grad,) = torch.autograd.grad(logits, wrt, grad_outputs=onehot[k], retain_graph=i < len(ranks) - 1)
        yield k, grad


def maps_per_rank(
    logits: torch.Tensor,
    wrt: torch.Tensor,
    targets: torch.Tensor,
    to_map: Callable[[torch.Tensor], torch.Tensor],
    size: tuple[int, int],
) -> torch.Tensor:
    """``(K, N, *size)`` float32 CPU maps: ``to_map(gradient of rank k)`` (``(N, *size)``);
    zero where the target is ``-1``."""
    valid = (targets >= 0).cpu()
    maps = torch.zeros((targets.shape[0], logits.shape[0], *size), dtype=torch.float32)
    for k, grad in rank_gradients(logits, wrt, targets):
        maps[k] = to_map(grad).float().cpu()
        maps[k, ~valid[k]] = 0.0
    return maps


def forward_then_ranks(
    classifier: Classifier,
    forward: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    choose_targets: TargetChooser,
    to_map: Callable[[torch.Tensor], torch.Tensor],
    size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """``forward()`` -> ``(logits, wrt)``; then the maps of the targets chosen from the logits.

    Returns ``(N, C)`` float32 logits and ``(K, N, *size)`` maps (:func:`maps_per_rank`).
    """
    with torch.enable_grad():
        logits, wrt = forward()
        check_scores(classifier, logits, wrt.shape[0])
        detached = logits.detach().float()
        targets = choose_targets(detached).to(logits.device)
        return detached, maps_per_rank(logits, wrt, targets, to_map, size)


def fixed_targets(targets: torch.Tensor) -> TargetChooser:
    """A chooser returning ``targets`` (``(N,)``) as the only rank: ``attribute`` through
    ``scores_and_maps``."""
    return lambda _logits: targets.view(1, -1)


@contextmanager
def captured_outputs(modules: list[torch.nn.Module]) -> Iterator[dict[torch.nn.Module, torch.Tensor]]:
    """While active, ``found[m]`` is the output of the last call of module ``m`` made in this
    thread (calls from other threads are ignored), in call order: the last key is the module
    called last. The hooks are removed on exit."""
    owner = threading.get_ident()
    found: dict[torch.nn.Module, torch.Tensor] = {}

    def hook(module: torch.nn.Module, _inputs: object, output: object) -> None:
        if threading.get_ident() == owner and isinstance(output, torch.Tensor):
            found.pop(module, None)
            found[module] = output

    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield found
    finally:
        for h in handles:
            h.remove()


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, h', w')`` -> ``(N, *size)``: bilinear, ``align_corners=False`` (as captum's
    ``LayerAttribution.interpolate`` and OpenCV's ``INTER_LINEAR``)."""
    return torch.nn.functional.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
