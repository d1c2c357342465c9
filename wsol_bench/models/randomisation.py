"""Model-parameter randomisation (Adebayo et al., "Sanity checks for saliency maps", NeurIPS
2018): the model's parametrised layers grouped into stages from the logits down, and copies
with the top stages (cascading) or one stage (independent) re-initialised.

Stages (:func:`randomisation_stages`), one generic rule for every ``nn.Module``:

1. the candidates are the root's children, a child that is an ``nn.Sequential`` or
   ``nn.ModuleList`` replaced by its own children (one level down: timm's ``blocks.0`` ..
   ``blocks.6``, torchvision's ``layer1.0`` .., ``features.0`` .., ``classifier.6``);
2. they are ordered by their first call in one forward pass of a dummy input (zeros,
   ``(1, 3, input_size, input_size)``, in eval mode, no gradients; the training flags are
   restored); candidates without parameters, or never called (they do not reach the logits,
   e.g. an auxiliary head in eval mode), are left out;
3. a normalisation layer (BatchNorm, GroupNorm, LayerNorm, ...) joins the stage of the
   candidate called just before it (``conv_stem+bn1``, ``conv_head+bn2``, ``conv1+bn1``);
4. parameters held by the root module itself (e.g. a position embedding) join the first
   stage in call order (the input side);
5. the list is reversed: stage 0 holds the logits layer.

For timm's EfficientNet-Lite this gives ``classifier``, ``conv_head+bn2``, ``blocks.6`` ..
``blocks.0``, ``conv_stem+bn1``; for a torchvision ResNet ``fc``, ``layer4.1`` ..
``layer1.0``, ``conv1+bn1``.

Re-initialisation (:func:`randomised_copy`): on a deep copy (the original is never
changed), each module of a stage with a ``reset_parameters()`` method calls it (Conv,
Linear, BatchNorm: for BatchNorm also its running statistics, unlike Adebayo et al.'s
TensorFlow code, which re-initialised trainable variables only); a parameter whose module
has none is re-drawn from a normal distribution with its current mean and standard
deviation. Stage ``j`` is re-initialised on the CPU with torch's RNG seeded by
``SeedSequence([seed, j])``, so its new values depend only on ``seed`` and ``j``: the same
in every cascading copy that includes it, in the independent copy of ``j``, and on any
device (the copy returns to the module's device after).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from wsol_bench.models.weights import seeded
from wsol_bench.registry import require

MODES = ("cascading", "independent")
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm,
)


@dataclass(frozen=True)
class Stage:
    """A group of layers re-initialised together: ``modules`` (paths from the root, in call
    order) and the qualified names of the ``parameters`` they hold (with any root-level
    parameters for the input-side stage); ``name`` joins the module paths with ``+``."""

    name: str
    modules: tuple[str, ...]
    parameters: tuple[str, ...]


def _candidates(module: nn.Module) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in module.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            out += [(f"{name}.{sub}", m) for sub, m in child.named_children()]
        else:
            out.append((name, child))
    return out


def _call_order(module: nn.Module, candidates: list[tuple[str, nn.Module]], example: torch.Tensor) -> list[str]:
    """Names of the candidates in the order of their first call on ``example``."""
    called: list[str] = []
    by_module: dict[int, list[str]] = {}
    for name, m in candidates:
        by_module.setdefault(id(m), []).append(name)

    def pre_hook(m: nn.Module, _args: object) -> None:
        for name in by_module.get(id(m), []):
            if name not in called:
                called.append(name)

    flags = {m: m.training for m in module.modules()}
    handles = [m.register_forward_pre_hook(pre_hook) for _, m in candidates]
    try:
        module.eval()
        with torch.no_grad():
            module(example)
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag
    return called


def _device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    for t in module.parameters():
        return t.device, t.dtype
    for b in module.buffers():
        return b.device, b.dtype if b.is_floating_point() else torch.float32
    return torch.device("cpu"), torch.float32


def randomisation_stages(module: nn.Module, input_size: int = 224, example: torch.Tensor | None = None) -> list[Stage]:
    """The stages of ``module`` from the logits down (see the module doc for the rule).

    ``example``: the dummy input of the forward pass that orders the layers (default zeros
    ``(1, 3, input_size, input_size)`` on the module's device). Every parameter used in that
    pass is in exactly one stage.
    """
    require(isinstance(input_size, int) and input_size >= 1, "input_size", input_size, "an integer >= 1")
    if example is None:
        device, dtype = _device_dtype(module)
        example = torch.zeros(1, 3, input_size, input_size, device=device, dtype=dtype)
    candidates = _candidates(module)
    modules = dict(candidates)
    groups: list[list[str]] = []
    for name in _call_order(module, candidates, example):
        m = modules[name]
        if not any(True for _ in m.parameters()):
            continue
        if isinstance(m, NORM_LAYERS) and groups:
            groups[-1].append(name)
        else:
            groups.append([name])
    root_params = [n for n, _ in module.named_parameters(recurse=False)]
    if not groups:
        if not root_params:
            raise ValueError(f"{type(module).__name__} has no parameters used in its forward pass")
        return [Stage("(root)", (), tuple(root_params))]
    used: set[str] = set()
    stages = []
    for i, group in enumerate(groups):
        params = [] if i else list(root_params)
        for name in group:
            for p, _ in modules[name].named_parameters():
                qualified = f"{name}.{p}"
                if qualified not in used:  # a parameter shared by two stages belongs to the first called
                    used.add(qualified)
                    params.append(qualified)
        stages.append(Stage("+".join(group), tuple(group), tuple(params)))
    return stages[::-1]


def stage_seed(seed: int, index: int) -> int:
    """The RNG seed of stage ``index`` under ``seed`` (``SeedSequence([seed, index])``)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _reinitialise(module: nn.Module, stage: Stage, seed: int) -> None:
    """Re-initialise ``stage`` of ``module`` (on the CPU) in place under ``seed``."""
    with seeded(seed):
        covered: set[int] = set()
        for path in stage.modules:
            for m in module.get_submodule(path).modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset):
                    reset()
                    covered.update(id(p) for p in m.parameters(recurse=False))
        with torch.no_grad():
            for name in stage.parameters:
                owner_path, _, leaf = name.rpartition(".")
                p = getattr(module.get_submodule(owner_path) if owner_path else module, leaf)
                if id(p) in covered:
                    continue
                mean = p.float().mean()
                std = p.float().std() if p.numel() > 1 else torch.zeros(())
                p.copy_(torch.randn(p.shape) * std + mean)


def randomised_copy(module: nn.Module, stages: Sequence[Stage], mode: str = "cascading", upto: int = 0,
                    seed: int = 0) -> nn.Module:
    """A deep copy of ``module`` with stages re-initialised: ``cascading``, stages ``0 ..
    upto`` (the logits down to stage ``upto``); ``independent``, stage ``upto`` only.

    The copy has the original's training flags, device and dtypes; deterministic for a seed
    (module doc). ``stages``: from :func:`randomisation_stages` of this module.
    """
    require(mode in MODES, "mode", mode, f"one of {', '.join(MODES)}")
    require(len(stages) > 0, "stages", list(stages), "a non-empty list")
    require(isinstance(upto, int) and 0 <= upto < len(stages), "upto", upto, f"an integer in [0, {len(stages) - 1}]")
    device, _ = _device_dtype(module)
    out = copy.deepcopy(module).to("cpu")
    for j in range(upto + 1) if mode == "cascading" else [upto]:
        _reinitialise(out, stages[j], stage_seed(seed, j))
    return out.to(device)


__all__ = ["MODES", "Stage", "randomisation_stages", "randomised_copy", "stage_seed"]
