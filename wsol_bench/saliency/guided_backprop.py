"""Guided backpropagation (Springenberg et al. 2014, "Striving for simplicity").

The gradient of the class score with respect to the crop (``[0, 1]`` RGB, as
:class:`~wsol_bench.saliency.gradient.Gradient`) in which, at every ReLU-type activation,
only positive gradients pass back: with ``g`` the gradient arriving at the activation's
output and ``x`` its input, the gradient leaving it is ``max(g, 0) * f'(x)``, ``f'`` being
``1[x > 0]`` for ``nn.ReLU`` and ``1[0 < x < 6]`` for ``nn.ReLU6`` (EfficientNet-Lite). That
is captum's ``GuidedBackprop``, which rewires ``nn.ReLU`` modules only; here both are
rewired. The map is ``max_c |.|``.

Only activation *modules* are rewired (forward hooks that put a tensor hook on their
output): an activation applied functionally (``F.relu``) keeps its plain gradient, and a
model without any ``nn.ReLU``/``nn.ReLU6`` module is refused. The hooks live only for the
call and act only on forward passes made by the calling thread, so the user's module is
never changed and another thread using it meanwhile gets plain gradients.

Cost: one forward pass per crop and one backward pass per crop and class rank (the hooks
stay on the graph, so every rank's backward pass is guided).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from wsol_bench.models import Classifier
from wsol_bench.saliency.backprop import BackwardStep, backward_step, model_layout
from wsol_bench.saliency.base import SaliencyMethod, max_abs_over_channels

#: activation modules whose backward pass is guided (subclasses included)
GUIDED_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)


def _positive(grad: torch.Tensor) -> torch.Tensor:
    return grad.clamp(min=0)


@contextmanager
def guided_activations(module: nn.Module) -> Iterator[list[int]]:
    """While active, forward passes of ``module`` made by this thread build graphs whose
    backward passes are guided at every :data:`GUIDED_ACTIVATIONS` module. Yields a
    one-item list counting the activation calls rewired so far. Hooks removed on exit."""
    owner = threading.get_ident()
    rewired = [0]

    def hook(_module: nn.Module, _inputs: object, output: object) -> None:
        if threading.get_ident() == owner and isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(_positive)  # runs before the activation's own backward mask
            rewired[0] += 1

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, GUIDED_ACTIVATIONS)]
    try:
        yield rewired
    finally:
        for h in handles:
            h.remove()


@dataclass(frozen=True)
class GuidedBackprop(SaliencyMethod):
    """``max_c |guided dS/dI_c|`` through ``nn.ReLU`` and ``nn.ReLU6`` modules; no parameters."""

    name: ClassVar[str] = "guided_backprop"
    cost: ClassVar[tuple[str, str]] = ("1 per crop", "1 per crop and class")

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> BackwardStep:
        """One guided forward pass; each class rank's maps then cost one backward pass through it."""

        def run() -> tuple[torch.Tensor, torch.Tensor]:
            x = model_layout(crops.detach()).requires_grad_(True)
            with guided_activations(classifier.module) as rewired:
                logits = classifier.logits(x)
            if not rewired[0]:
                raise ValueError(
                    f"guided_backprop: {classifier.name} calls no nn.ReLU or nn.ReLU6 module (activations applied "
                    "as functions cannot be rewired), so its guided gradient would be the plain gradient"
                )
            return logits, x

        return backward_step(classifier, run, max_abs_over_channels, tuple(crops.shape[2:]))
