"""Saliency (attribution) methods and the test-time augmentation that wraps any of them.

* :mod:`~wsol_bench.saliency.base`: the protocol, ``method.forward(classifier, crops)`` giving
  the crops' logits and then the maps of any class ranks;
* :mod:`~wsol_bench.saliency.image_saliency`: crops, reflections, top-k selection and
  pasting around any method (:func:`image_saliency`);
* one module per method, listed in :data:`SALIENCY_METHODS` (``saliency.method``);
* :class:`NoiseTunnel`: any method averaged over noisy copies (SmoothGrad of the gradient);
* :mod:`~wsol_bench.saliency.cache`: the on-disk cache of results.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wsol_bench.registry import Registry, make_params
from wsol_bench.saliency.adapters import as_method
from wsol_bench.saliency.base import (
    SaliencyMethod,
    SaliencyStep,
    TargetwiseMethod,
    attribution_maps,
)
from wsol_bench.saliency.crops import CropWindow, crop_windows, paste_maps
from wsol_bench.saliency.image_saliency import (
    CropSettings,
    SaliencyResult,
    image_saliency,
    select_classes,
)
from wsol_bench.saliency.noise_tunnel import NoiseTunnel

#: ``saliency.method`` -> the method's class (a frozen dataclass of its parameters).
SALIENCY_METHODS: Registry[type[SaliencyMethod]] = Registry("saliency.method", {
    "gradient": "wsol_bench.saliency.gradient:Gradient",
    "gradient_x_input": "wsol_bench.saliency.gradient_x_input:GradientXInput",
    "integrated_gradients": "wsol_bench.saliency.integrated_gradients:IntegratedGradients",
    "guided_backprop": "wsol_bench.saliency.guided_backprop:GuidedBackprop",
    "gradcam": "wsol_bench.saliency.gradcam:GradCam",
    "cam": "wsol_bench.saliency.cam:Cam",
})


def saliency_method(name: str, noise_tunnel: Mapping[str, Any] | None = None, **params: Any) -> SaliencyMethod:
    """The method called ``name`` (or ``package.module:NAME``: a method class, a captum or
    pytorch-grad-cam class or a function, :func:`~wsol_bench.saliency.adapters.as_method`)
    with ``params``, checked; with
    ``noise_tunnel`` (``{"n_samples": 25, "noise": 0.15, "seed": 0}``, any subset) wrapped in a
    :class:`NoiseTunnel` (SmoothGrad of that method)."""
    method = as_method(SALIENCY_METHODS.get(name), params, "saliency")
    if noise_tunnel is None:
        return method
    if not isinstance(noise_tunnel, Mapping):
        raise ValueError(f"saliency.noise_tunnel={noise_tunnel!r}: must be a mapping of n_samples, noise, seed")
    return make_params(NoiseTunnel, {**noise_tunnel, "method": method}, "saliency.noise_tunnel")


__all__ = [
    "SALIENCY_METHODS",
    "CropSettings",
    "CropWindow",
    "NoiseTunnel",
    "SaliencyMethod",
    "SaliencyResult",
    "SaliencyStep",
    "TargetwiseMethod",
    "as_method",
    "attribution_maps",
    "crop_windows",
    "image_saliency",
    "paste_maps",
    "saliency_method",
    "select_classes",
]
