"""Other libraries' attribution objects and plain functions as saliency methods.

:func:`as_method` accepts, wherever a method is expected (the Python API, and
``saliency=custom saliency.method=pkg.mod:NAME`` on the command line):

* a :class:`~wsol_bench.saliency.SaliencyMethod` (as it is; a subclass is built from the
  parameters);
* a **captum** attribution, an object (``captum.attr.Saliency(net)``) or a class
  (``captum.attr.IntegratedGradients``, built here on the classifier's network; a layer
  attribution such as ``LayerGradCam`` on ``model.target_layer``); the parameters go to
  its ``attribute`` call (``n_steps=32``);
* a **pytorch-grad-cam** CAM, an object (``GradCAM(model=net, target_layers=[layer])``) or
  a class (built here with ``model=`` the network and ``target_layers=`` the classifier's
  target layer; the parameters go to the constructor);
* any callable ``f(model, inputs, target) -> maps``.

Input spaces: captum and pytorch-grad-cam objects are given the crops *normalised* for the
classifier (what its network takes; they are built on that network); a callable gets
``model``, the classifier as an ``nn.Module`` on ``[0, 1]`` RGB, and ``inputs``, the crops in
``[0, 1]`` (the harness's convention: a gradient is then the paper's ``dS/dI``). ``target``
is the ``(N,)`` int64 class of each crop.

Outputs, per crop (tensors or arrays): ``(N, h, w)`` maps; ``(N, 3, h, w)`` per-channel
attributions, reduced by the paper's ``max_c |a_c|``; ``(N, 1, h', w')`` (or ``(N, h',
w')``) layer maps, bilinearly resized to the crop (``align_corners=False``, captum's
``LayerAttribution.interpolate``). A single-channel map must be non-negative (e.g.
``relu_attributions=True`` for ``LayerGradCam``). Anything else is an error naming the
method, the shape or sign it returned and what is expected.

captum and pytorch-grad-cam are imported only when such an object is used. Results of an
object or of a lambda / nested function are not cached on disk (nothing identifies them
across runs); those of a class or a module-level function are, keyed by its import path
and the parameters.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.registry import make_params
from wsol_bench.saliency.backprop import upsample
from wsol_bench.saliency.base import (
    SaliencyContractError,
    SaliencyMethod,
    TargetwiseMethod,
    max_abs_over_channels,
)


def import_path(obj: object) -> str:
    """``package.module:QualName`` of a class or function (of the object's class otherwise)."""
    target = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__name__)}"


def _named(obj: object) -> bool:
    """Whether ``obj`` is a class or a module-level function, identified by its import path."""
    return (inspect.isclass(obj) or inspect.isfunction(obj)) and "<" not in getattr(obj, "__qualname__", "<")


def crop_maps(output: object, n: int, size: tuple[int, int], source: str) -> torch.Tensor:
    """``(n, *size)`` float32 maps from what an attribution returned (see the module docstring)."""
    if isinstance(output, (tuple, list)) and len(output) == 1:
        output = output[0]  # captum returns a tuple for tuple inputs
    if isinstance(output, np.ndarray):
        output = torch.from_numpy(np.ascontiguousarray(output))
    if not isinstance(output, torch.Tensor):
        raise SaliencyContractError(f"saliency method {source} returned {type(output).__name__}; expected a tensor "
                                    f"or array of maps ({n}, h, w)")
    out = output.detach().float()
    shape = tuple(out.shape)
    if out.ndim == 3 and out.shape[0] == n:
        out = out[:, None]
    if out.ndim != 4 or out.shape[0] != n or out.shape[1] not in (1, 3):
        raise SaliencyContractError(
            f"saliency method {source} returned shape {shape} for {n} crops of {size[0]}x{size[1]}; expected "
            f"({n}, {size[0]}, {size[1]}) maps, ({n}, 3, {size[0]}, {size[1]}) attributions or ({n}, 1, h, w) "
            "layer maps")
    if out.shape[1] == 3:
        if tuple(out.shape[2:]) != size:
            raise SaliencyContractError(f"saliency method {source} returned per-channel attributions of shape "
                                        f"{shape}; expected them in the crop's frame, ({n}, 3, {size[0]}, {size[1]})")
        return max_abs_over_channels(out)
    finite = out[torch.isfinite(out)]
    if finite.numel() and float(finite.min()) < 0:
        raise SaliencyContractError(
            f"saliency method {source} returned a single-channel map with negative values (minimum "
            f"{float(finite.min()):.3g}); maps must be non-negative (for captum's LayerGradCam pass "
            "relu_attributions=True)")
    maps = out[:, 0]
    return maps if tuple(maps.shape[1:]) == size else upsample(maps, size)


class UnitInput(torch.nn.Module):
    """The classifier as an ``nn.Module`` on ``[0, 1]`` RGB: its normalisation, then its network."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.network = classifier.module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.logits(x)


@dataclass(frozen=True)
class CallableMethod(TargetwiseMethod):
    """``function(model, inputs, target) -> maps`` (see the module docstring)."""

    function: str  # the function's import path (its identity)
    fn: Callable[..., Any] = field(default=lambda *a: None, compare=False, repr=False, init=True, kw_only=True)

    name: ClassVar[str] = "callable"
    cost: ClassVar[tuple[str, str]] = ("the function's", "the function's")

    @property
    def cacheable(self) -> bool:  # type: ignore[override]
        return _named(self.fn)

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            output = self.fn(UnitInput(classifier).eval(), crops.detach().clone(), targets)
        return crop_maps(output, crops.shape[0], tuple(crops.shape[2:]), self.function)


def _captum_base() -> type | None:
    module = sys.modules.get("captum.attr")
    return getattr(module, "Attribution", None) if module is not None else None


def _gradcam_base() -> type | None:
    module = sys.modules.get("pytorch_grad_cam.base_cam")
    return getattr(module, "BaseCAM", None) if module is not None else None


def _is_instance_or_subclass(obj: object, base: type | None) -> bool:
    if base is None:
        return False
    return isinstance(obj, base) or (inspect.isclass(obj) and issubclass(obj, base))


@dataclass(frozen=True)
class CaptumMethod(TargetwiseMethod):
    """A captum attribution object or class; ``params`` go to its ``attribute`` call."""

    attribution: str  # import path of the class (its identity, with the parameters)
    params: Mapping[str, Any] = field(default_factory=dict)
    obj: Any = field(default=None, compare=False, repr=False, kw_only=True)

    name: ClassVar[str] = "captum"
    cost: ClassVar[tuple[str, str]] = ("captum's", "captum's")

    @property
    def cacheable(self) -> bool:  # type: ignore[override]
        return inspect.isclass(self.obj)

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import captum.attr

        obj = self.obj
        if inspect.isclass(obj):
            if issubclass(obj, captum.attr.LayerAttribution):
                obj = obj(classifier.module, classifier.feature_module(crops.shape[-1])[1])
            else:
                obj = obj(classifier.module)
        inputs = classifier.normalise(crops.detach()).requires_grad_(True)
        with torch.enable_grad():
            output = obj.attribute(inputs, target=targets.to(inputs.device), **dict(self.params))
        return crop_maps(output, crops.shape[0], tuple(crops.shape[2:]), f"captum {self.attribution}")


@dataclass(frozen=True)
class GradCamLibraryMethod(TargetwiseMethod):
    """A pytorch-grad-cam CAM object or class; ``params`` go to the class's constructor.

    Its maps are the library's: each min-max normalised to ``[0, 1]`` and resized to the crop."""

    cam: str  # import path of the class (its identity, with the parameters)
    params: Mapping[str, Any] = field(default_factory=dict)
    obj: Any = field(default=None, compare=False, repr=False, kw_only=True)

    name: ClassVar[str] = "pytorch_grad_cam"
    cost: ClassVar[tuple[str, str]] = ("the library's", "the library's")

    @property
    def cacheable(self) -> bool:  # type: ignore[override]
        return inspect.isclass(self.obj)

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cam = self.obj
        if inspect.isclass(cam):
            layer = classifier.feature_module(crops.shape[-1])[1]
            cam = cam(model=classifier.module, target_layers=[layer], **dict(self.params))
        inputs = classifier.normalise(crops.detach())
        with torch.enable_grad():
            output = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(int(t)) for t in targets])
        return crop_maps(output, crops.shape[0], tuple(crops.shape[2:]), f"pytorch-grad-cam {self.cam}")


def as_method(obj: object, params: Mapping[str, Any] | None = None, where: str = "saliency") -> SaliencyMethod:
    """A saliency method from ``obj`` (see the module docstring); ``params`` configure it."""
    params = dict(params or {})
    if isinstance(obj, SaliencyMethod):
        if params:
            raise ValueError(f"{where}: parameters {sorted(params)} given for an already configured method")
        return obj
    if inspect.isclass(obj) and issubclass(obj, SaliencyMethod):
        return make_params(obj, params, where)
    if _is_instance_or_subclass(obj, _captum_base()):
        return CaptumMethod(import_path(obj), params, obj=obj)
    if _is_instance_or_subclass(obj, _gradcam_base()):
        return GradCamLibraryMethod(import_path(obj), params, obj=obj)
    if callable(obj) and not inspect.isclass(obj):
        if params:
            raise ValueError(f"{where}: a function takes no parameters (given: {', '.join(sorted(params))})")
        return CallableMethod(import_path(obj), fn=obj)
    raise TypeError(f"{where}: {obj!r} is not a saliency method: expected a wsol_bench SaliencyMethod, a captum "
                    "attribution, a pytorch-grad-cam CAM or a function f(model, inputs, target) -> maps")
