"""torchvision classifiers: ``alexnet``, ``vgg16``, ``resnet50`` by name, or any
architecture with ``model=torchvision model.arch=NAME`` (e.g. ``resnet18``, ``vgg19``).

Weights, in order of precedence:

* ``model.weights=PATH``: a state dict file (bare or under ``'model'``);
* ``model.weights=random``: torchvision's random initialisation seeded with ``model.seed``;
* default: the file of the architecture's default weights (``IMAGENET1K_V1`` for the three
  named models, as in the paper's era; torchvision's ``DEFAULT`` for others) in torch's hub
  cache, ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``);
  downloaded there only when ``model.allow_download=true``, otherwise a missing file is a
  ``FileNotFoundError`` naming the path and how to get it.

Normalisation: the weights' own (ImageNet mean/std). Outputs: 1000 logits in sorted-WNID
order. CAM / Grad-CAM target layers: ``layer4`` (ResNets), ``features`` (VGG, AlexNet), else
found automatically (:func:`wsol_bench.models.feature_layer`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torchvision

from wsol_bench.models import Classifier, ModelSpec
from wsol_bench.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    file_weights_id,
    load_weights_into,
    random_weights_id,
    seeded,
)

NAMED = ("alexnet", "vgg16", "resnet50")  # model.name values that are torchvision architectures


def architecture(spec: ModelSpec) -> str:
    """The torchvision architecture of ``spec``: its name, or ``model.arch`` for ``model=torchvision``."""
    arch = spec.name if spec.name in NAMED else spec.arch
    if not arch:
        raise ValueError("model=torchvision needs model.arch=NAME (e.g. resnet18)")
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ValueError(f"model.arch={arch!r} is not a torchvision classification model "
                         f"(torchvision.models.list_models() lists them)")
    return arch


def default_weights(arch: str) -> torchvision.models.WeightsEnum:
    enum = torchvision.models.get_model_weights(arch)
    return enum["IMAGENET1K_V1"] if arch in NAMED else enum.DEFAULT


def hub_weights_path(arch: str) -> Path:
    """Where torch's hub cache keeps ``arch``'s default weights file (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / default_weights(arch).url.rsplit("/", 1)[-1]


def create_module(arch: str, num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """torchvision's ``arch`` with its own random initialisation, seeded by ``seed``."""
    with seeded(seed):
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def _default_weights_file(arch: str, allow_download: bool) -> Path:
    path = hub_weights_path(arch)
    if path.is_file():
        return path
    url = default_weights(arch).url
    if not allow_download:
        raise FileNotFoundError(
            f"{arch}: no weights at {path} (torch hub cache; set TORCH_HOME to use another). "
            f"Get them with model.allow_download=true, or download {url} into {path.parent}, "
            f"or pass model.weights=PATH (a state dict file) or model.weights=random"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    match = re.search(r"-([a-f0-9]+)\.", path.name)  # torch hub names files <name>-<sha256 prefix>.pth
    torch.hub.download_url_to_file(url, str(path), hash_prefix=match.group(1) if match else None, progress=True)
    return path


def _target_layer(arch: str) -> str | None:
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return "layer4"
    if arch.startswith(("vgg", "alexnet")):
        return "features"
    return None


def build(spec: ModelSpec) -> Classifier:
    """The classifier on the CPU, in eval mode."""
    arch = architecture(spec)
    if spec.weights is None and spec.num_classes != 1000:
        raise ValueError(f"{arch}'s ImageNet weights have 1000 classes, not model.num_classes={spec.num_classes}")
    module = create_module(arch, spec.num_classes, spec.seed)
    if spec.weights == "random":
        weights_id = random_weights_id(spec.seed)
    else:
        path = _default_weights_file(arch, spec.allow_download) if spec.weights is None else Path(spec.weights)
        load_weights_into(module, path, arch)
        weights_id = file_weights_id(path)
    name = spec.name if spec.name in NAMED else f"torchvision:{arch}"
    return Classifier(module.eval(), IMAGENET_MEAN, IMAGENET_STD, name, weights_id, _target_layer(arch))
