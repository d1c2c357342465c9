"""Grad-CAM (Selvaraju et al. 2017) at the classifier's target layer.

With ``A`` the ``(C', h', w')`` output of the target layer (``classifier.feature_module()``:
``bn2`` of EfficientNet-Lite, ``layer4`` of a ResNet, else the last module with spatial
output) and ``S_c`` the class logit::

    map = upsample(ReLU(sum_k alpha_k A_k)),   alpha_k = mean_{y,x} dS_c/dA_k(y, x)

``upsample``: bilinear to the crop size, ``align_corners=False``. Equal to captum's
``LayerGradCam(..., relu_attributions=True)`` followed by ``LayerAttribution.interpolate``
(``bilinear``): the test reference.

Cost: one forward pass per crop and, per class rank, one backward pass from the logits to
the target layer only (the head: cheap next to a full backward pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from wsol_bench.models import Classifier
from wsol_bench.saliency.backprop import (
    BackwardStep,
    backward_step,
    captured_outputs,
    model_layout,
    upsample,
)
from wsol_bench.saliency.base import SaliencyMethod


def grad_cam(activations: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``(N, C', h', w')`` activations and gradients -> ``(N, h', w')`` ``ReLU(sum_k alpha_k A_k)``."""
    alpha = grad.float().mean(dim=(2, 3), keepdim=True)
    return (alpha * activations.detach().float()).sum(dim=1).clamp(min=0)


@dataclass(frozen=True)
class GradCam(SaliencyMethod):
    """Grad-CAM at ``classifier.feature_module()``, ReLU, bilinear to the crop; no parameters."""

    name: ClassVar[str] = "gradcam"
    cost: ClassVar[tuple[str, str]] = ("1 per crop", "1 per crop and class, to the target layer only")

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> BackwardStep:
        """One forward pass; each class rank's maps then cost one backward pass to the target layer."""
        name, layer = classifier.feature_module(crops.shape[-1])
        size = tuple(crops.shape[2:])
        held: dict[str, torch.Tensor] = {}

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            x = model_layout(crops.detach()).requires_grad_(True)  # so A is on the graph even with frozen weights
            with captured_outputs([layer]) as found:
                logits = classifier.logits(x)
            if layer not in found or found[layer].ndim != 4:
                raise ValueError(f"gradcam: the target layer {name!r} of {classifier.name} gave no (N, C, h, w) output")
            held["A"] = found[layer]
            return logits, held["A"]

        return backward_step(classifier, run, lambda grad: upsample(grad_cam(held["A"], grad), size), size)
