"""Class activation maps (Zhou et al. 2016, "Learning deep features for discriminative localization").

For networks whose head is global average pooling of the last feature maps ``A``
(``(C', h', w')``, the output of ``classifier.feature_module()``: ``bn2`` of
EfficientNet-Lite, ``layer4`` of a ResNet) followed by one linear layer ``(W, b)``::

    CAM_c = sum_k W[c, k] A_k,     S_c = mean_{y,x} CAM_c(y, x) + b_c

The map is ``upsample(ReLU(CAM_c))``: negative evidence is cut (as Grad-CAM does), then
bilinear to the crop size with ``align_corners=False``. On a GAP + linear head CAM equals
Grad-CAM up to the positive factor ``1 / (h' w')``.

The head is checked on every call: the last ``nn.Linear`` module called must take the
``C'`` channels, and the logits must equal the spatial mean of the CAMs plus the bias (to
float tolerance, every class); otherwise (VGG, AlexNet, the paper's ConvNet, a wrong
``model.target_layer``) a ``ValueError`` names the model.

Cost: one forward pass per crop, no backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from wsol_bench.models import Classifier
from wsol_bench.saliency.backprop import (
    captured_outputs,
    check_scores,
    model_layout,
    upsample,
)
from wsol_bench.saliency.base import SaliencyMethod, SaliencyStep

RTOL = 1e-4  # of the largest |logit|, for the head check


def linear_head(classifier: Classifier, features: torch.Tensor, logits: torch.Tensor, layer: str,
                last_linear: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` of a global-average-pooling + linear head on ``features``, checked; else ``ValueError``."""
    problem = f"cam: {classifier.name} has no global-average-pooling + linear head on its target layer {layer!r}"
    hint = "; use a model with one (EfficientNet-Lite, ResNets) or saliency=gradcam"
    if features.ndim != 4:
        raise ValueError(f"{problem} (its output has shape {tuple(features.shape)}, not (N, C, h, w)){hint}")
    if not isinstance(last_linear, nn.Linear):
        raise ValueError(f"{problem} (no nn.Linear module is called after it){hint}")
    weight = last_linear.weight.detach()
    if tuple(weight.shape) != (logits.shape[1], features.shape[1]):
        raise ValueError(f"{problem} (its last linear layer maps {weight.shape[1]} features to {weight.shape[0]} "
                         f"outputs; the layer has {features.shape[1]} channels and there are {logits.shape[1]} "
                         f"classes){hint}")
    bias = last_linear.bias.detach() if last_linear.bias is not None else torch.zeros_like(weight[:, 0])
    pooled = features.float().mean(dim=(2, 3)) @ weight.float().T + bias.float()
    gap = float((pooled - logits.float()).abs().max())
    scale = max(1.0, float(logits.abs().max()))
    if not gap <= RTOL * scale:
        raise ValueError(f"{problem}: its logits differ from the spatial mean of the class activation maps plus the "
                         f"bias by up to {gap:.3g}{hint}")
    return weight, bias


@dataclass(frozen=True)
class Cam(SaliencyMethod):
    """``upsample(ReLU(W[c] . A))`` for GAP + linear heads; no parameters."""

    name: ClassVar[str] = "cam"
    cost: ClassVar[tuple[str, str]] = ("1 per crop", "0")

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> CamStep:
        """One forward pass without gradients; every rank's map from the same feature maps."""
        name, layer = classifier.feature_module(crops.shape[-1])
        linears = [m for m in classifier.module.modules() if isinstance(m, nn.Linear)]
        with torch.no_grad(), captured_outputs([layer]) as features, captured_outputs(linears) as called:
            logits = classifier.logits(model_layout(crops.detach()))
        check_scores(classifier, logits, crops.shape[0])
        if layer not in features:
            raise ValueError(f"cam: the target layer {name!r} of {classifier.name} is not called in its forward pass")
        activations = features[layer]
        weight, _ = linear_head(classifier, activations, logits, name, next(reversed(called), None))
        return CamStep(logits.float(), activations, weight, tuple(crops.shape[2:]))


@dataclass
class CamStep(SaliencyStep):
    """The feature maps ``A`` (``(N, C', h', w')``) and the head's weights ``W``; a rank's map is
    ``upsample(ReLU(W[c] . A))``."""

    logits: torch.Tensor
    activations: torch.Tensor
    weight: torch.Tensor
    size: tuple[int, int]

    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(self.activations.device)
        out = torch.zeros((targets.shape[0], self.activations.shape[0], *self.size), dtype=torch.float32)
        for k in range(targets.shape[0]):
            rows = torch.nonzero(targets[k] >= 0).flatten()
            if len(rows):
                cams = torch.einsum("nc,nchw->nhw", self.weight[targets[k, rows]].float(),
                                    self.activations[rows].float())
                out[k, rows.cpu()] = upsample(cams.clamp(min=0), self.size).cpu()
        return out
