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
from wsol_bench.saliency.backprop import check_scores, forward_then_ranks, model_layout
from wsol_bench.saliency.base import SaliencyMethod, TargetChooser, max_abs_over_channels


@dataclass(frozen=True)
class Gradient(SaliencyMethod):
    """``max_c |dS/dI_c|`` (the paper); no parameters."""

    name: ClassVar[str] = "gradient"
    cost: ClassVar[tuple[str, str]] = ("1 per crop", "1 per crop and class")

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            x = model_layout(crops.detach()).requires_grad_(True)
            logits = classifier.logits(x)
            check_scores(classifier, logits, x.shape[0])
            score = logits.gather(1, targets.view(-1, 1).to(logits.device)).sum()
            (grad,) = torch.autograd.grad(score, x)
        return max_abs_over_channels(grad)

    def scores_and_maps(
        self, classifier: Classifier, crops: torch.Tensor, choose_targets: TargetChooser
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass, then one backward pass per class rank through the same graph."""

        def forward() -> tuple[torch.Tensor, torch.Tensor]:
            x = model_layout(crops.detach()).requires_grad_(True)
            return classifier.logits(x), x

        return forward_then_ranks(classifier, forward, choose_targets, max_abs_over_channels, tuple(crops.shape[2:]))
