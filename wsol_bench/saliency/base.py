"""The saliency-method protocol: one forward pass over the crops, then the maps of any class ranks.

A method is a frozen dataclass whose fields are its parameters (they all go into the
saliency cache key) with one method, :meth:`SaliencyMethod.forward`::

    step = method.forward(classifier, crops)   # the crops' forward pass (and whatever graph the maps need)
    step.logits                                # (N, C) float32 class scores (logits, never softmax)
    maps = step.maps(targets)                  # (K, N, h, w) float32 maps of the (K, N) targets

* ``crops``: ``(N, 3, h, w)`` float RGB in ``[0, 1]``, *before* the classifier's
  normalisation, on ``classifier.device``; each crop as the network sees it (a reflected
  crop is already reflected);
* ``targets``: ``(K, N)`` int64 class indices in the model's output order (sorted WNIDs
  for ImageNet): ``targets[k, n]`` is the class of rank ``k`` for crop ``n``, ``-1`` where
  crop ``n`` needs no map of rank ``k`` (its map is zero). The caller (the engine) chooses
  them from ``step.logits``; :meth:`SaliencyStep.maps` is called once per step;
* maps: ``(K, N, h, w)`` float32, finite, non-negative, in the crop frame.

Test-time augmentation (crops, reflections, pasting, top-k selection) is not the method's
business: :func:`wsol_bench.saliency.image_saliency` wraps any method and checks what it
returns (:func:`checked_maps`). A method that computes one map per ``(crop, class)``
call (a wrapped callable, a captum object) subclasses :class:`TargetwiseMethod` and
implements ``attribute`` only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from wsol_bench.models import Classifier


class SaliencyStep(ABC):
    """The result of :meth:`SaliencyMethod.forward`: the crops' logits, and their maps on request."""

    logits: torch.Tensor  #: ``(N, C)`` float32, detached

    @abstractmethod
    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        """``(K, N, h, w)`` float32 maps of ``targets`` (``(K, N)`` int64, ``-1``: a zero map)."""


class SaliencyMethod:
    """Base class of saliency methods (subclasses are frozen dataclasses of their parameters)."""

    name: ClassVar[str] = ""
    #: passes per crop and class, for the cost table: (forward, backward)
    cost: ClassVar[tuple[str, str]] = ("1", "1")
    #: whether results may be cached on disk (keyed by the parameters, which must then say everything)
    cacheable: ClassVar[bool] = True

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> SaliencyStep:
        """One forward pass over ``crops``; the returned step gives their logits and maps."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward(classifier, crops)")


@dataclass
class PerRankStep(SaliencyStep):
    """A step whose maps come from ``attribute(crops, targets)`` once per class rank, for the
    crops that need that rank (all of them in one call), each call's maps checked
    (:func:`checked_maps`, naming ``method``)."""

    logits: torch.Tensor
    crops: torch.Tensor
    attribute: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    method: object = None

    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(self.crops.device)
        size = tuple(self.crops.shape[2:])
        out = torch.zeros((targets.shape[0], self.crops.shape[0], *size), dtype=torch.float32)
        for k in range(targets.shape[0]):
            rows = torch.nonzero(targets[k] >= 0).flatten()
            if len(rows):
                maps = self.attribute(self.crops[rows], targets[k, rows])
                out[k, rows.cpu()] = checked_maps(self.method, maps, (len(rows), *size))
        return out


class TargetwiseMethod(SaliencyMethod):
    """A method computing one map per crop for the crop's class: implement :meth:`attribute`.

    The logits come from one forward pass without gradients; each class rank then costs
    one :meth:`attribute` call on the crops that need it.
    """

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(N, h, w)`` maps of ``targets`` (``(N,)`` int64) on ``crops`` (``(N, 3, h, w)``)."""
        raise NotImplementedError

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> SaliencyStep:
        from wsol_bench.saliency.backprop import clean_scores

        return PerRankStep(clean_scores(classifier, crops), crops.detach(),
                           lambda c, t: self.attribute(classifier, c, t), self)


def method_name(method: object) -> str:
    """The method's registered name, else its class's import path."""
    return getattr(method, "name", "") or f"{type(method).__module__}:{type(method).__qualname__}"


def method_label(method: object) -> str:
    """The method's name, with the wrapped method's in brackets (``noise_tunnel(gradcam)``)."""
    inner = getattr(method, "method", None)
    return f"{method_name(method)}({method_label(inner)})" if isinstance(inner, SaliencyMethod) else method_name(method)


class SaliencyContractError(ValueError):
    """A method returned something other than the protocol's maps (shape, type or sign)."""


def checked_maps(method: object, maps: object, shape: tuple[int, ...]) -> torch.Tensor:
    """``maps`` as a float32 CPU tensor if it is what the protocol promises: ``shape``
    (``(K, N, h, w)``), non-negative; else :class:`SaliencyContractError` naming the method,
    what it returned and what is expected. Non-finite values are left to the caller (an
    image's failure, not the method's)."""
    name = method_name(method)
    expected = ("(K, N, h, w) = " if len(shape) == 4 else "(N, h, w) = ") + str(tuple(shape))
    if isinstance(maps, np.ndarray):
        maps = torch.from_numpy(maps)
    if not isinstance(maps, torch.Tensor):
        raise SaliencyContractError(f"saliency method {name} returned {type(maps).__name__}, not a tensor "
                                    f"{expected} of non-negative float maps")
    if tuple(maps.shape) != tuple(shape):
        hint = ""
        if maps.ndim == len(shape) + 1 and maps.shape[-3] in (1, 3):
            hint = " (per-channel attributions? reduce them to one map per crop, e.g. max over channels of |a|)"
        raise SaliencyContractError(f"saliency method {name} returned maps of shape {tuple(maps.shape)}; "
                                    f"expected {expected}{hint}")
    if not maps.is_floating_point():
        maps = maps.float()
    maps = maps.detach().float().cpu()
    finite = maps[torch.isfinite(maps)]
    if finite.numel() and float(finite.min()) < 0:
        raise SaliencyContractError(f"saliency method {name} returned negative values (minimum "
                                    f"{float(finite.min()):.3g}); maps must be non-negative (e.g. take |a| or "
                                    "ReLU of signed attributions)")
    return maps


def max_abs_over_channels(attributions: torch.Tensor) -> torch.Tensor:
    """``(N, 3, h, w)`` -> ``(N, h, w)``: the paper's reduction, ``max_c |a_c|``, as float32."""
    return attributions.detach().abs().amax(dim=1).float()


def attribution_maps(method: SaliencyMethod, classifier: Classifier, crops: torch.Tensor,
                     targets: torch.Tensor) -> torch.Tensor:
    """Maps of ``targets`` on ``crops`` through the protocol: ``(N,)`` targets give ``(N, h, w)``
    maps, ``(K, N)`` targets ``(K, N, h, w)``."""
    single = targets.ndim == 1
    grid = targets.view(1, -1) if single else targets
    step = method.forward(classifier, crops)
    maps = checked_maps(method, step.maps(grid), (grid.shape[0], crops.shape[0], *crops.shape[2:]))
    return maps[0] if single else maps
