"""The paper's image-specific class saliency (Simonyan et al. 2014, Section 3).

For a crop ``I`` (RGB in ``[0, 1]`` *before* the classifier's normalisation) and class
``c``: ``w = dS_c / dI``, the gradient of the class score (the logit, never the softmax);
the map is ``max_channels |w|``. Taking the gradient in ``[0, 1]`` space (the
normalised-space gradient divided by the channel's ``std``) makes maps comparable across
models with different normalisations.

Cost: one forward pass over all crops of all images of a call and, from that single graph,
one backward pass per class rank ``k`` (each computing the gradients of the ``k``-th class
of every crop at once). Gradients flow to the input only: parameters' ``.grad`` is never
touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from wsol_bench.models import Classifier
from wsol_bench.saliency.backprop import BackwardStep, backward_step, model_layout
from wsol_bench.saliency.base import SaliencyMethod, max_abs_over_channels


@dataclass(frozen=True)
class Gradient(SaliencyMethod):
    """``max_c |dS/dI_c|`` (the paper); no parameters."""

    name: ClassVar[str] = "gradient"
    cost: ClassVar[tuple[str, str]] = ("1 per crop", "1 per crop and class")

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> BackwardStep:
        """One forward pass; each class rank's maps then cost one backward pass through it."""

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            x = model_layout(crops.detach()).requires_grad_(True)
            return classifier.logits(x), x

        return backward_step(classifier, run, max_abs_over_channels, tuple(crops.shape[2:]))
