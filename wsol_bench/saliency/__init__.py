"""Saliency (attribution) methods and the test-time augmentation that wraps any of them.

* :mod:`~wsol_bench.saliency.base`: the protocol, ``method.attribute(classifier, crops, targets)``;
* :mod:`~wsol_bench.saliency.image_saliency`: crops, reflections, top-k selection and
  pasting around any method (:func:`image_saliency`);
* one module per method, listed in :data:`SALIENCY_METHODS` (``saliency.method``);
* :mod:`~wsol_bench.saliency.cache`: the on-disk cache of results.
"""

from __future__ import annotations

from typing import Any

from wsol_bench.registry import Registry
from wsol_bench.saliency.base import SaliencyMethod
from wsol_bench.saliency.crops import CropWindow, crop_windows, paste_maps
from wsol_bench.saliency.image_saliency import CropSettings, SaliencyResult, image_saliency, select_classes

#: ``saliency.method`` -> the method's class (a frozen dataclass of its parameters).
SALIENCY_METHODS: Registry[type[SaliencyMethod]] = Registry("saliency.method", {
    "gradient": "wsol_bench.saliency.gradient:Gradient",
    "gradient_x_input": "wsol_bench.saliency.gradient_x_input:GradientXInput",
    "smoothgrad": "wsol_bench.saliency.smoothgrad:SmoothGrad",
    "integrated_gradients": "wsol_bench.saliency.integrated_gradients:IntegratedGradients",
    "guided_backprop": "wsol_bench.saliency.guided_backprop:GuidedBackprop",
    "gradcam": "wsol_bench.saliency.gradcam:GradCam",
    "cam": "wsol_bench.saliency.cam:Cam",
})


def saliency_method(name: str, **params: Any) -> SaliencyMethod:
    """The method called ``name`` (or ``package.module:Class``) with ``params``, checked."""
    return SALIENCY_METHODS.create(name, params, "saliency")


__all__ = [
    "SALIENCY_METHODS",
    "CropSettings",
    "CropWindow",
    "SaliencyMethod",
    "SaliencyResult",
    "crop_windows",
    "image_saliency",
    "paste_maps",
    "saliency_method",
    "select_classes",
]
