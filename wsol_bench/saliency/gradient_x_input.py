"""Gradient x input (Shrikumar et al. 2016, "Not just a black box").

The input is the crop in the classifier's *normalised* space, ``x_n = (x - mean) / std``
(what the network's first layer sees), and the attribution is ``x_n * dS_c / dx_n``, as
captum's ``InputXGradient`` on ``classifier.module`` (the tests' reference). Since
``dS/dx_n = std * dS/dx``, this
equals ``(x - mean) * dS/dx`` in ``[0, 1]`` space: the gradient weighted by the pixel's
distance from the normalisation mean (the first-order term of integrated gradients from a
mean-colour baseline), independent of ``std``. In raw ``[0, 1]`` space a black pixel would
get no attribution whatever the gradient, which is why the normalised space is used. The
map is ``max_c |x_n * dS/dx_n|`` (the paper's channel reduction).

Cost: as :class:`~wsol_bench.saliency.gradient.Gradient`, one forward pass per crop and one
backward pass per crop and class rank (:mod:`~wsol_bench.saliency.backprop`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from wsol_bench.models import Classifier
from wsol_bench.saliency.backprop import BackwardStep, backward_step, model_layout
from wsol_bench.saliency.base import SaliencyMethod, max_abs_over_channels


@dataclass(frozen=True)
class GradientXInput(SaliencyMethod):
    """``max_c |x_n * dS/dx_n|`` with ``x_n`` the normalised crop; no parameters."""

    name: ClassVar[str] = "gradient_x_input"
    cost: ClassVar[tuple[str, str]] = ("1 per crop", "1 per crop and class")

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> BackwardStep:
        """One forward pass; each class rank's maps then cost one backward pass through it."""
        x_n = classifier.normalise(crops.detach())

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            x = model_layout(x_n).requires_grad_(True)
            return classifier.module(x), x

        return backward_step(classifier, run, lambda grad: max_abs_over_channels(x_n * grad), tuple(crops.shape[2:]))
