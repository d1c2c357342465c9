"""Class model visualisation (Simonyan et al. 2014, Section 2): no plotting here.

For each class ``c`` find ``I* = argmax_I S_c(I) - lambda * ||I||_2^2`` by plain gradient
ascent, where ``S_c`` is the *unnormalised* class score (logit) and ``I`` lives in the
model's **normalised input space** (``(rgb - mean) / std``). The ascent starts from the zero
image there, i.e. the per-channel mean colour. Displayable RGB is ``I * std + mean``
("adding the mean image back"), then clipped to [0, 1] (``display="clip"``) or contrast
stretched (``display="stretch"``: per image, the 0.5th..99.5th percentile of
``I * std + mean`` over all pixels and channels is mapped linearly onto [0, 1], then clipped).

One image per requested class, optimised together in one batch. The model runs in eval
mode, so batch entries are independent: the result for a class does not depend on which
other classes are in the batch (up to float rounding). Optional regularisers (off by
default, not in the paper): Gaussian blur of ``I`` every ``blur_every`` steps, random
translation ("jitter") of up to ``jitter`` pixels before each forward pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from torchvision.transforms import functional as TF

from wsol_bench.data.synsets import SynsetTable, default_synsets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassSpec:
    """One class to visualise: model output ``index``, its WNID (may be '') and short name."""

    index: int
    wnid: str
    name: str


def resolve_classes(specs: Sequence[str | int], table: SynsetTable | None = None) -> list[ClassSpec]:
    """Map WNIDs (``'n01855672'``) or index strings/ints (``'99'``) to output indices.

    Indices are positions in ``table`` (default: timm's sorted 1000 ILSVRC WNIDs, offline).
    An index beyond the table (a model with other classes) is kept, named ``class <i>``.
    """
    table = table or default_synsets()
    out = []
    for spec in specs:
        text = str(spec).strip()
        if text.isdigit():
            i = int(text)
            if i < len(table):
                wnid = table.wnids[i]
                out.append(ClassSpec(i, wnid, table.name(wnid)))
            else:
                out.append(ClassSpec(i, "", f"class {i}"))
        else:
            out.append(ClassSpec(table.index(text) - table.offset, text, table.name(text)))
    return out


@dataclass
class ClassModelResult:
    """Output of :func:`class_model_images`; row ``k`` of each tensor is ``class_indices[k]``."""

    inputs: torch.Tensor  # (K, 3, H, W) the optimised I, normalised input space, CPU float32
    rgb: torch.Tensor  # (K, 3, H, W) I * std + mean clipped to [0, 1]
    history: pd.DataFrame  # step, k, class_index, score, objective, l2_norm, prob


def to_rgb(
    inputs: torch.Tensor, mean: Sequence[float], std: Sequence[float], display: str = "clip"
) -> torch.Tensor:
    """Normalised-space ``(K, 3, H, W)`` images to displayable RGB in [0, 1] (see module doc)."""
    m = torch.tensor(mean, dtype=inputs.dtype, device=inputs.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=inputs.dtype, device=inputs.device).view(1, 3, 1, 1)
    if display == "clip":
        return (inputs * s + m).clamp(0.0, 1.0)
    if display == "stretch":
        rgb = (inputs * s + m).flatten(1)
        lo = torch.quantile(rgb, 0.005, dim=1).view(-1, 1, 1, 1)
        hi = torch.quantile(rgb, 0.995, dim=1).view(-1, 1, 1, 1)
        return ((inputs * s + m - lo) / (hi - lo).clamp_min(1e-8)).clamp(0.0, 1.0)
    raise ValueError(f"display={display!r} is not one of 'clip', 'stretch'")


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 2 * math.ceil(3 * sigma) + 1
    return TF.gaussian_blur(x, [k, k], [sigma, sigma])


def class_model_images(
    module: nn.Module,
    class_indices: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    size: int = 224,
    l2: float = 0.01,
    lr: float = 1.0,
    steps: int = 200,
    blur_every: int = 0,
    blur_sigma: float = 0.5,
    jitter: int = 0,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> ClassModelResult:
    """Gradient ascent on ``S_c(I) - l2 * ||I||^2`` for every class at once.

    ``module`` maps a normalised ``(B, 3, size, size)`` batch to logits; it is run in eval
    mode (its mode is restored afterwards) and its parameters are not modified. Update:
    ``I <- I + lr * d/dI [S_c(I) - l2 * ||I||^2]``. ``history`` has one row per class for
    steps ``0..steps`` (step ``t``: the image after ``t`` updates). Deterministic given
    ``seed`` (which only drives the jitter). Requires ``lr * l2 < 1`` (else the penalty
    step overshoots and the ascent diverges).
    """
    if not lr * l2 < 1.0:
        raise ValueError(f"lr * l2 = {lr * l2:g} >= 1: the gradient ascent diverges (the penalty alone "
                         f"multiplies I by 1 - 2 lr l2 each step)")
    if device is None:
        p = next(module.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    idx = torch.as_tensor(list(class_indices), dtype=torch.long, device=device)
    if idx.ndim != 1 or len(idx) == 0:
        raise ValueError("class_indices must be a non-empty list of ints")
    gen = torch.Generator().manual_seed(int(seed))
    x = torch.zeros(len(idx), 3, size, size, device=device)
    rows: list[pd.DataFrame] = []
    was_training = module.training
    module.eval()
    try:
        for t in range(steps + 1):
            x.requires_grad_(t < steps)
            shifted = x
            if jitter > 0 and t < steps:
                dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=gen))
                shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            with torch.set_grad_enabled(t < steps):
                logits = module(shifted)
                score = logits.gather(1, idx[:, None]).squeeze(1)
                sq = x.pow(2).flatten(1).sum(1)
                objective = score - l2 * sq
            prob = logits.detach().float().softmax(1).gather(1, idx[:, None]).squeeze(1)
            rows.append(pd.DataFrame({
                "step": t, "k": range(len(idx)), "class_index": idx.tolist(),
                "score": score.detach().cpu().double().numpy(),
                "objective": objective.detach().cpu().double().numpy(),
                "l2_norm": sq.detach().sqrt().cpu().double().numpy(),
                "prob": prob.cpu().double().numpy(),
            }))
            if t == steps:
                break
            if t % 50 == 0:
                log.info("step %d/%d: mean score %.3f, mean ||I|| %.2f", t, steps,
                         float(score.detach().mean()), float(sq.detach().sqrt().mean()))
            (grad,) = torch.autograd.grad(objective.sum(), x)
            with torch.no_grad():
                x = x.detach() + lr * grad
                if blur_every > 0 and (t + 1) % blur_every == 0:
                    x = _blur(x, blur_sigma)
    finally:
        module.train(was_training)
    x = x.detach().float().cpu()
    return ClassModelResult(inputs=x, rgb=to_rgb(x, mean, std), history=pd.concat(rows, ignore_index=True))
