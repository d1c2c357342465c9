"""The ConvNet of Simonyan, Vedaldi & Zisserman (2014), Section 2:
conv64-conv256-conv256-conv256-conv256-full4096-full4096-full1000.

The paper gives only the layer widths and says the net is of the Krizhevsky et al.
(2012) family. The missing details follow Zeiler & Fergus (2013), the AlexNet variant
of the time with a 64/256-channel-like first two stages:

=========  ==================================  =====================================
layer      choice                              size at 224x224 input
=========  ==================================  =====================================
conv1      64 filters 7x7, stride 2, pad 1;    110x110x64 -> 55x55x64
           ReLU, LRN, max-pool 3x3/2 pad 1
conv2      256 filters 5x5, stride 2, pad 0;   26x26x256 -> 13x13x256
           ReLU, LRN, max-pool 3x3/2 pad 1
conv3-5    256 filters 3x3, stride 1, pad 1;   13x13x256
           ReLU each
pool5      max-pool 3x3/2                      6x6x256
avgpool    adaptive average pool to 6x6        6x6x256 (identity at 224; lets other
                                               input sizes work)
full6/7    4096, ReLU, dropout 0.5 before      4096
full8      num_classes (1000) logits           1000
=========  ==================================  =====================================

Why: 7x7/2 then 5x5/2 (Zeiler & Fergus) instead of AlexNet's 11x11/4 keeps more
spatial resolution in the first layers, which the paper's saliency maps benefit from;
LRN as in Krizhevsky (size 5, alpha 1e-4, beta 0.75, k 2); dropout 0.5 before each of
the two hidden fully connected layers, as in AlexNet. Initialisation: Kaiming-normal
convolutions, N(0, 0.01) fully connected, zero biases.

Normalisation: ImageNet mean/std on ``[0, 1]`` RGB. No default weights: pass
``model.weights=PATH`` (e.g. a ``task=train`` checkpoint) or ``model.weights=random``.
"""

from __future__ import annotations

import torch
from torch import nn

from wsol_bench.models import Classifier, ModelSpec
from wsol_bench.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    file_weights_id,
    load_weights_into,
    random_weights_id,
    seeded,
)

NORMALISATION = (IMAGENET_MEAN, IMAGENET_STD)
TARGET_LAYER = "features.13"  # the ReLU after conv5, before pool5


class PaperConvNet(nn.Module):
    """conv64-conv256-conv256-conv256-conv256-full4096-full4096-full<num_classes> (see module doc)."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(64, 256, kernel_size=5, stride=2, padding=0),
            nn.ReLU(inplace=True),
            nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` normalised RGB (H, W >= 63) -> ``(B, num_classes)`` logits."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def create_module(name: str = "paper_convnet", num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised :class:`PaperConvNet`, seeded by ``seed``."""
    with seeded(seed):
        return PaperConvNet(num_classes=num_classes)


def build(spec: ModelSpec) -> Classifier:
    """The classifier on the CPU, in eval mode. There are no default weights."""
    mean, std = NORMALISATION
    if spec.weights is None:
        raise FileNotFoundError(
            "paper_convnet has no default weights: pass model.weights=PATH (a state dict, e.g. the "
            "checkpoints/last.pt of a task=train run) or model.weights=random"
        )
    module = create_module(spec.name, spec.num_classes, spec.seed)
    if spec.weights == "random":
        weights_id = random_weights_id(spec.seed)
    else:
        load_weights_into(module, spec.weights, spec.name)
        weights_id = file_weights_id(spec.weights)
    return Classifier(module.eval(), mean, std, spec.name, weights_id, TARGET_LAYER)
