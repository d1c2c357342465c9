"""Integrated gradients (Sundararajan et al. 2017, "Axiomatic attribution for deep networks").

For a crop ``x`` (``[0, 1]`` RGB, before normalisation), the black baseline ``b = 0`` and
class ``c``::

    a = (x - b) * integral_0^1 dS_c/dx (b + alpha (x - b)) d alpha,     map = max_c |a_c|

The integral is captum's default rule, Gauss-Legendre with ``n_steps`` nodes. The
attributions do not depend on the normalisation (an affine change of the input space
scales ``x - b`` and the gradient inversely), so the black image in ``[0, 1]`` space is the
baseline in any space. Completeness, ``sum(a) = S_c(x) - S_c(b)``, holds up to the
quadrature error: :meth:`IntegratedGradients.completeness` reports the gap.

Cost: one forward pass per crop for the scores, then per path point one forward pass per
crop and one backward pass per crop and class rank (:mod:`~wsol_bench.saliency.backprop`),
``max_batch`` network inputs at a time (or all the call's crops, if more); the class ranks
share the forward passes. The tests check the maps against captum's ``IntegratedGradients``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.registry import require
from wsol_bench.saliency.backprop import (
    check_scores,
    clean_scores,
    model_layout,
    rank_gradients,
)
from wsol_bench.saliency.base import SaliencyMethod, SaliencyStep, max_abs_over_channels


def gauss_legendre(n_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``alpha`` in ``(0, 1)`` and weights (summing to 1) of the ``n_steps``-point
    Gauss-Legendre rule on ``[0, 1]`` (captum's ``gausslegendre``)."""
    nodes, weights = np.polynomial.legendre.leggauss(n_steps)
    return 0.5 * (nodes + 1.0), 0.5 * weights


@dataclass(frozen=True)
class IntegratedGradients(SaliencyMethod):
    """``max_c |x * mean gradient on the path from black to x|``: see the module docstring."""

    n_steps: int = 32  # Gauss-Legendre nodes on the path from the black image to the crop

    name: ClassVar[str] = "integrated_gradients"
    cost: ClassVar[tuple[str, str]] = ("1 + n_steps per crop", "n_steps per crop and class")
    #: network inputs per forward pass (path points x crops), at least the call's crops
    max_batch: ClassVar[int] = 32

    def __post_init__(self) -> None:
        require(1 <= self.n_steps <= 1000, "n_steps", self.n_steps, "between 1 and 1000")

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> SaliencyStep:
        """Scores of the crops (no gradients); the maps integrate along the path on request."""
        return IntegratedStep(clean_scores(classifier, crops), crops.detach(), self, classifier)

    def completeness(
        self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,)`` float64 ``S_c(x) - S_c(black)`` and the gap ``sum(a) - (S_c(x) - S_c(black))``
        for ``targets`` (``(N,)``): how far the quadrature is from completeness."""
        with torch.no_grad():
            rows = torch.arange(crops.shape[0], device=crops.device)
            t = targets.to(crops.device)
            at_x = classifier.logits(crops)[rows, t].double()
            change = at_x - classifier.logits(torch.zeros_like(crops))[rows, t].double()
        total = self.attributions(classifier, crops, t.view(1, -1))[0].sum(dim=(1, 2, 3)).double()
        return change.cpu(), (total - change).cpu()

    def attributions(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(K, N, 3, h, w)`` float32 signed attributions of ``targets`` (``(K, N)``, ``-1``:
        zero) on the crops' device: per chunk of path points one forward pass, then one
        backward pass per rank."""
        crops = crops.detach()
        n = crops.shape[0]
        targets = targets.to(crops.device)
        alphas, weights = gauss_legendre(self.n_steps)
        total = torch.zeros((targets.shape[0], *crops.shape), dtype=torch.float32, device=crops.device)
        per_pass = max(1, self.max_batch // n)
        with torch.enable_grad():
            for start in range(0, self.n_steps, per_pass):
                a = torch.as_tensor(alphas[start : start + per_pass], dtype=crops.dtype, device=crops.device)
                w = torch.as_tensor(weights[start : start + per_pass], dtype=torch.float32, device=crops.device)
                x = model_layout((a.view(-1, 1, 1, 1, 1) * crops[None]).flatten(0, 1)).requires_grad_(True)
                logits = classifier.logits(x)
                check_scores(classifier, logits, x.shape[0])
                for k, grad in rank_gradients(logits, x, targets.repeat(1, len(a))):
                    total[k] += torch.einsum("s,sn...->n...", w, grad.float().reshape(len(a), *crops.shape))
        return total * crops[None].float()


@dataclass
class IntegratedStep(SaliencyStep):
    """The crops' scores; all ranks' maps from the same path points (:meth:`IntegratedGradients.attributions`)."""

    logits: torch.Tensor
    crops: torch.Tensor
    method: IntegratedGradients
    classifier: Classifier

    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(self.crops.device)
        attributions = self.method.attributions(self.classifier, self.crops, targets)
        maps = max_abs_over_channels(attributions.flatten(0, 1)).view(*targets.shape, *self.crops.shape[2:]).cpu()
        maps[(targets < 0).cpu()] = 0.0
        return maps
