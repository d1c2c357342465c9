"""BatchNorm folding: a copy of a classifier with every BatchNorm that directly follows a
convolution merged into that convolution's weights and bias (eval-mode arithmetic, so the
logits are unchanged up to float rounding).

Why: in eval mode a BatchNorm is a per-channel affine map, yet on the CPU it costs a full
pass over its input in the forward *and* in every backward pass of the gradient method
(one per class rank), and its input is kept alive for the backward. Folding it removes
both (EfficientNet-Lite0, 10 crops, top-5, one thread: about 40% less time and a
smaller graph; docs/benchmarks.md).

Pairs are found on a dummy forward pass, never from module names: a BatchNorm is folded
into a convolution only when the tensor it receives *is* the convolution's output (same
object, same autograd node, not modified in place since) and nothing else in the graph
reads that output; each module must run exactly once. Anything else is left as it is.
The weights come from :func:`torch.nn.utils.fusion.fuse_conv_bn_eval`.

Module names are kept: the BatchNorm is replaced in its parent by :class:`nn.Identity`
(a plain ``BatchNorm2d``) or by :class:`FoldedNormAct` (timm's ``BatchNormAct2d``:
BatchNorm, drop and activation in one module), which keeps its ``drop`` and ``act``, so a
``target_layer`` such as EfficientNet's ``bn2`` still names the feature maps after the
activation.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from wsol_bench.models import Classifier

log = logging.getLogger(__name__)

TRANSFORM = "fold_batchnorm"


class FoldedNormAct(nn.Module):
    """What remains of timm's ``BatchNormAct2d`` once its normalisation is folded into the
    preceding convolution: its ``drop`` then its ``act`` (same attribute names)."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop = drop
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


def _is_norm_act(bn: nn.Module) -> bool:
    """timm's ``BatchNormAct2d`` (any version): a ``BatchNorm2d`` whose forward also applies
    ``drop`` and ``act`` submodules."""
    return isinstance(bn, nn.BatchNorm2d) and type(bn).__name__ == "BatchNormAct2d" \
        and isinstance(getattr(bn, "act", None), nn.Module) and isinstance(getattr(bn, "drop", None), nn.Module)


def _foldable_bn(bn: nn.Module) -> bool:
    """A BatchNorm whose eval forward is the affine map of its running statistics."""
    return (type(bn) is nn.BatchNorm2d or _is_norm_act(bn)) and bn.running_mean is not None \
        and bn.running_var is not None


def _graph_consumers(root: torch.Tensor) -> dict[Any, int]:
    """How many edges of ``root``'s autograd graph point at each node (its readers)."""
    count: dict[Any, int] = {}
    seen, stack = set(), [root.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for nxt, _ in node.next_functions:
            if nxt is not None:
                count[nxt] = count.get(nxt, 0) + 1
                stack.append(nxt)
    return count


def find_conv_bn_pairs(module: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv name, bn name)`` of every BatchNorm that reads a convolution's output and
    nothing else on a forward pass of ``example`` (see the module docstring for the checks)."""
    names = {m: n for n, m in module.named_modules()}
    convs = {m for m in names if isinstance(m, nn.Conv2d)}
    bns = {m for m in names if _foldable_bn(m)}
    calls: dict[nn.Module, int] = {}
    produced: dict[int, tuple[nn.Module, torch.Tensor, Any, int]] = {}  # id(output) -> conv, output, node, version
    fed: dict[nn.Module, tuple[torch.Tensor, Any, int]] = {}  # bn -> input, its node, its version

    def conv_hook(mod: nn.Module, _inp: Any, out: Any) -> None:
        calls[mod] = calls.get(mod, 0) + 1
        if isinstance(out, torch.Tensor):
            produced[id(out)] = (mod, out, out.grad_fn, out._version)

    def bn_pre_hook(mod: nn.Module, inp: Any) -> None:
        calls[mod] = calls.get(mod, 0) + 1
        if len(inp) == 1 and isinstance(inp[0], torch.Tensor):
            fed[mod] = (inp[0], inp[0].grad_fn, inp[0]._version)

    handles = [m.register_forward_hook(conv_hook) for m in convs]
    handles += [m.register_forward_pre_hook(bn_pre_hook) for m in bns]
    try:
        with torch.enable_grad():
            logits = module(example.detach().clone().requires_grad_(True))
    finally:
        for h in handles:
            h.remove()
    if not isinstance(logits, torch.Tensor) or logits.grad_fn is None:
        return []
    readers = _graph_consumers(logits)
    pairs = []
    for bn, (tensor, node, version) in fed.items():
        hit = produced.get(id(tensor))
        if hit is None or calls.get(bn) != 1:
            continue
        conv, out, conv_node, conv_version = hit
        if out is not tensor or calls.get(conv) != 1 or node is not conv_node or version != conv_version:
            continue  # modified in place, re-used, or another tensor at a recycled address
        if node is None or readers.get(node, 0) != 1:
            continue  # something besides the BatchNorm reads the convolution's output
        pairs.append((names[conv], names[bn]))
    return pairs


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def fold_module(module: nn.Module, example: torch.Tensor) -> tuple[nn.Module, int]:
    """A folded eval-mode deep copy of ``module`` and the number of BatchNorms folded."""
    folded = copy.deepcopy(module).eval()
    pairs = find_conv_bn_pairs(folded, example)
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = folded.get_submodule(conv_name), folded.get_submodule(bn_name)
            _set_submodule(folded, conv_name, fuse_conv_bn_eval(conv, bn))  # type: ignore[type-var, arg-type]
            _set_submodule(folded, bn_name, FoldedNormAct(bn.drop, bn.act)  # type: ignore[arg-type]
                           if _is_norm_act(bn) else nn.Identity())
    return folded.eval(), len(pairs)


def fold_batchnorm(classifier: Classifier, input_size: int = 224, rtol: float = 1e-4,
                   channels_last: bool = False) -> Classifier:
    """A copy of ``classifier`` with every BatchNorm that directly follows a convolution
    folded into it (``classifier`` itself is never changed).

    The copy's logits on a seeded random ``input_size`` batch must equal the original's
    within ``rtol`` of their largest magnitude (float32 rounding: measured at 1e-6 of it on
    EfficientNet-Lite0); otherwise, or when nothing folds, the original is returned with a
    warning (or a log line). The result's ``transforms`` gains ``"fold_batchnorm"`` (it is
    in the saliency cache key and the run manifest). ``channels_last`` also stores the
    weights channels-last (measured: no gain on the CPU, docs/benchmarks.md).
    """
    module = classifier.module
    device = classifier.device
    generator = torch.Generator().manual_seed(0)
    example = torch.rand((1, 3, input_size, input_size), generator=generator).to(device)
    example = classifier.normalise(example)
    try:
        folded, count = fold_module(module, example)
    except Exception as err:  # an architecture the dummy pass or the fusion cannot handle
        warnings.warn(f"{classifier.name}: BatchNorm folding failed ({type(err).__name__}: {err}); "
                      "using the unfolded model", stacklevel=2)
        return classifier
    if count == 0:
        log.info("%s: no BatchNorm follows a convolution; nothing to fold", classifier.name)
        return classifier
    if channels_last:
        folded = folded.to(memory_format=torch.channels_last)
    with torch.no_grad():
        was_training = module.training
        module.eval()
        try:
            expected = module(example).float()
        finally:
            module.train(was_training)
        got = folded(example).float()
    scale = float(expected.abs().max()) or 1.0
    error = float((got - expected).abs().max()) if got.shape == expected.shape else float("inf")
    if not error <= rtol * scale:
        warnings.warn(f"{classifier.name}: the BatchNorm-folded model's logits differ from the original's by "
                      f"{error:.3g} (> {rtol:g} x {scale:.3g}); using the unfolded model", stacklevel=2)
        return classifier
    log.info("%s: folded %d BatchNorms into their convolutions (max logit change %.2g)", classifier.name, count, error)
    return replace(classifier, module=folded, transforms=(*classifier.transforms, TRANSFORM))


__all__ = ["FoldedNormAct", "TRANSFORM", "find_conv_bn_pairs", "fold_batchnorm", "fold_module"]
