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
``max_batch`` network inputs at a time (or all the call's crops, if more).
:meth:`~IntegratedGradients.attribute` is captum's ``IntegratedGradients`` itself
(``n_steps`` forward and backward passes per crop); ranks share the forward passes only in
:meth:`~IntegratedGradients.scores_and_maps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.registry import require
from wsol_bench.saliency.backprop import check_scores, clean_scores, model_layout, rank_gradients
from wsol_bench.saliency.base import SaliencyMethod, TargetChooser, max_abs_over_channels


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

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """captum's ``IntegratedGradients`` (black baseline, Gauss-Legendre), ``max_c |.|``."""
        return max_abs_over_channels(self._captum(classifier, crops, targets, delta=False))

    def completeness(
        self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,)`` float64 ``S_c(x) - S_c(black)`` and the gap ``sum(a) - (S_c(x) - S_c(black))``
        (captum's ``return_convergence_delta``), for ``targets`` (``(N,)``)."""
        _, delta = self._captum(classifier, crops, targets, delta=True)
        with torch.no_grad():
            rows = torch.arange(crops.shape[0], device=crops.device)
            t = targets.to(crops.device)
            at_x = classifier.logits(crops)[rows, t].double()
            change = at_x - classifier.logits(torch.zeros_like(crops))[rows, t].double()
        return change.cpu(), delta.double().cpu()

    def _captum(
        self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor, delta: bool
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        from captum.attr import IntegratedGradients as CaptumIG

        with torch.enable_grad():
            return CaptumIG(classifier.logits).attribute(
                crops.detach(), baselines=0.0, target=targets.to(crops.device), n_steps=self.n_steps,
                method="gausslegendre", internal_batch_size=max(self.max_batch, crops.shape[0]),
                return_convergence_delta=delta,
            )

    def scores_and_maps(
        self, classifier: Classifier, crops: torch.Tensor, choose_targets: TargetChooser
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the crops (no gradients), then the maps of the chosen targets."""
        logits = clean_scores(classifier, crops)
        targets = choose_targets(logits).to(crops.device)
        maps = max_abs_over_channels(self.attributions(classifier, crops, targets).flatten(0, 1))
        maps = maps.view(*targets.shape, *crops.shape[2:]).cpu()
        maps[(targets < 0).cpu()] = 0.0
        return logits, maps

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
