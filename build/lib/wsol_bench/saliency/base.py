"""The saliency-method protocol: one map per crop for the crop's target class.

A method is a frozen dataclass whose fields are its parameters (they all go into the
saliency cache key) with an :meth:`SaliencyMethod.attribute` method:

* ``crops``: ``(N, 3, h, w)`` float RGB in ``[0, 1]``, *before* the classifier's
  normalisation, on ``classifier.device``; each crop as the network sees it (a reflected
  crop is already reflected);
* ``targets``: ``(N,)`` int64 class indices in the model's output order (sorted WNIDs for
  ImageNet), one per crop;
* returns ``(N, h, w)`` float32, non-negative, in the crop frame.

Test-time augmentation (crops, reflections, pasting and top-k selection) is not the
method's business: :func:`wsol_bench.saliency.image_saliency` wraps any method. A method
that can compute several class ranks from one forward pass (the paper's gradient) also
overrides :meth:`SaliencyMethod.scores_and_maps`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from wsol_bench.models import Classifier

TargetChooser = Callable[[torch.Tensor], torch.Tensor]
"""Maps ``(N, C)`` float32 logits to ``(K, N)`` int64 targets, ``-1`` where no map is wanted."""


class SaliencyMethod:
    """Base class of saliency methods (subclasses are frozen dataclasses of their parameters)."""

    name: ClassVar[str] = ""
    #: passes per crop and class, for the cost table: (forward, backward)
    cost: ClassVar[tuple[str, str]] = ("1", "1")

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(N, h, w)`` float32 maps of ``targets`` on ``crops`` (see the module docstring)."""
        raise NotImplementedError

    def scores_and_maps(
        self, classifier: Classifier, crops: torch.Tensor, choose_targets: TargetChooser
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, C)`` logits of ``crops`` and ``(K, N, h, w)`` maps of ``choose_targets(logits)``.

        Default: one forward pass without gradients for the scores, then
        :meth:`attribute` once per class rank ``k`` on the crops that need rank ``k``
        (all images' crops in one call). Zero maps where the target is ``-1``.
        """
        with torch.no_grad():
            logits = classifier.logits(crops).float()
        targets = choose_targets(logits).to(crops.device)
        maps = torch.zeros((targets.shape[0], *crops.shape[:1], *crops.shape[2:]), dtype=torch.float32)
        for k in range(targets.shape[0]):
            rows = torch.nonzero(targets[k] >= 0).flatten()
            if len(rows):
                maps[k, rows.cpu()] = self.attribute(classifier, crops[rows], targets[k, rows]).float().cpu()
        return logits, maps


def max_abs_over_channels(attributions: torch.Tensor) -> torch.Tensor:
    """``(N, 3, h, w)`` -> ``(N, h, w)``: the paper's reduction, ``max_c |a_c|``, as float32."""
    return attributions.detach().abs().amax(dim=1).float()
