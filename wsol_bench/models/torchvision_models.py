"""torchvision ``alexnet``, ``vgg16`` and ``resnet50`` (ImageNet ``IMAGENET1K_V1`` weights).

Weights, in order of precedence:

* ``model.weights=PATH``: a state dict file (bare or under ``'model'``);
* ``model.weights=random``: random initialisation seeded with ``model.seed``;
* default: torchvision's file name in torch's hub cache,
  ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``); downloaded
  there only when ``model.allow_download=true``, otherwise a missing file is a
  ``FileNotFoundError`` naming the path and how to get it.

The ``IMAGENET1K_V1`` weights are the classic recipe evaluated at resize 256 / crop 224,
the protocol of the paper. Normalisation: ImageNet mean/std on ``[0, 1]`` RGB. Outputs:
1000 logits in sorted-WNID order.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import torch
import torchvision

from wsol_bench.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    file_weights_id,
    load_state_dict_file,
    random_weights_id,
    seeded,
)

NORMALISATION = {n: (IMAGENET_MEAN, IMAGENET_STD) for n in ("alexnet", "vgg16", "resnet50")}

_CONSTRUCTORS: dict[str, tuple[Callable[..., torch.nn.Module], Callable[[], torchvision.models.WeightsEnum]]] = {
    "alexnet": (torchvision.models.alexnet, lambda: torchvision.models.AlexNet_Weights.IMAGENET1K_V1),
    "vgg16": (torchvision.models.vgg16, lambda: torchvision.models.VGG16_Weights.IMAGENET1K_V1),
    "resnet50": (torchvision.models.resnet50, lambda: torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
}


def _check_name(name: str) -> None:
    if name not in _CONSTRUCTORS:
        raise ValueError(f"{name!r} is not one of the torchvision models {sorted(_CONSTRUCTORS)}")


def hub_weights_path(name: str) -> Path:
    """Where torch's hub cache keeps ``name``'s ``IMAGENET1K_V1`` file (it may not exist)."""
    _check_name(name)
    url = _CONSTRUCTORS[name][1]().url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def create_module(name: str, num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """torchvision's ``name`` with its own random initialisation, seeded by ``seed``."""
    _check_name(name)
    with seeded(seed):
        return _CONSTRUCTORS[name][0](weights=None, num_classes=num_classes)


def _default_weights(name: str, allow_download: bool) -> Path:
    path = hub_weights_path(name)
    if path.is_file():
        return path
    enum = _CONSTRUCTORS[name][1]()
    if not allow_download:
        raise FileNotFoundError(
            f"{name}: no weights at {path} (torch hub cache; set TORCH_HOME to use another). "
            f"Get them with model.allow_download=true, or download {enum.url} into {path.parent}, "
            f"or pass model.weights=PATH (a state dict file) or model.weights=random"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    match = re.search(r"-([a-f0-9]+)\.", path.name)  # torch hub names files <name>-<sha256 prefix>.pth
    torch.hub.download_url_to_file(enum.url, str(path), hash_prefix=match.group(1) if match else None, progress=True)
    return path


def build(
    name: str,
    weights: str | None = None,
    num_classes: int = 1000,
    seed: int = 0,
    allow_download: bool = False,
) -> tuple[torch.nn.Module, str]:
    """``(module, weights_id)`` on the CPU, in eval mode."""
    _check_name(name)
    if weights is None and num_classes != 1000:
        raise ValueError(f"{name}'s ImageNet weights have 1000 classes, not model.num_classes={num_classes}")
    if weights == "random":
        return create_module(name, num_classes, seed).eval(), random_weights_id(seed)
    path = _default_weights(name, allow_download) if weights is None else Path(weights)
    state = load_state_dict_file(path)
    with torch.device("meta"):
        module = _CONSTRUCTORS[name][0](weights=None, num_classes=num_classes)
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval(), file_weights_id(path)
