"""A user's own network: ``model=custom model.factory=package.module:function``.

``function(num_classes=N)`` (or ``function()`` if it takes no such argument) returns an
``nn.Module`` mapping a normalised ``(B, 3, H, W)`` batch to ``(B, N)`` logits.
``model.weights=PATH`` loads a state dict into it (``weights_only=True``); without weights
the module is used as the factory returns it (its state is digested for cache keys).
Normalisation: ``model.mean``/``model.std`` (default ImageNet's). CAM / Grad-CAM target
layer: ``model.target_layer``, else found automatically.
"""

from __future__ import annotations

import inspect

import torch

from wsol_bench.models import Classifier, ModelSpec
from wsol_bench.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    file_weights_id,
    load_weights_into,
    seeded,
    state_digest,
)
from wsol_bench.registry import Registry


def build(spec: ModelSpec) -> Classifier:
    """The factory's module on the CPU, in eval mode."""
    if not spec.factory:
        raise ValueError("model=custom needs model.factory=package.module:function")
    factory = Registry("model.factory", {}).get(spec.factory)
    takes_classes = "num_classes" in inspect.signature(factory).parameters
    with seeded(spec.seed):
        module = factory(num_classes=spec.num_classes) if takes_classes else factory()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"model.factory={spec.factory!r} returned {type(module).__name__}, not a torch.nn.Module")
    if spec.weights not in (None, "random"):
        load_weights_into(module, spec.weights, spec.factory)
        weights_id = file_weights_id(spec.weights)
    else:
        weights_id = state_digest(module)
    return Classifier(module.eval(), IMAGENET_MEAN, IMAGENET_STD, f"custom:{spec.factory}", weights_id, None)
