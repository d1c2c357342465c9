"""``insertion`` (Petsiuk et al., "RISE", BMVC 2018): the ground-truth class's softmax
probability as the pixels of the 224 x 224 centre crop are revealed on a baseline, most
salient first, 1/56 of them a step; the area under that curve, higher is better. Baseline by
default RISE's: the crop blurred (11 x 11 Gaussian, sigma 5). Kernels:
:mod:`wsol_bench.metrics.perturbation`; frame, class and figures:
:mod:`wsol_bench.metrics.faithfulness`.

Keys: ``insertion_auc`` (mean over images), ``insertion_auc_ci95`` (Student-t),
``insertion_auc_std``, ``insertion_auc_n_images``, ``insertion_auc_n_without_state``,
``insertion_baseline``, ``insertion_n_steps``, ``insertion_crop``; per image ``insertion_auc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from wsol_bench.metrics.faithfulness import RiseAuc


@dataclass
class Insertion(RiseAuc):
    """Insertion AUC (higher is better); parameters in :class:`~wsol_bench.metrics.faithfulness.RiseAuc`."""

    name: ClassVar[str] = "insertion"
    mode: ClassVar[str] = "insertion"
    columns: ClassVar[tuple[str, ...]] = ("insertion_auc",)
    count_key: ClassVar[str] = "insertion_auc"


__all__ = ["Insertion"]
