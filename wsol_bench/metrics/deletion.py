"""``deletion`` (Petsiuk et al., "RISE", BMVC 2018): the ground-truth class's softmax
probability as the pixels of the 224 x 224 centre crop are replaced by a baseline, most
salient first, 1/56 of them a step; the area under that curve, lower is better (the map
found the pixels the class needs). Baseline by default RISE's: the classifier's mean colour
(zeros of its normalised input). Kernels: :mod:`wsol_bench.metrics.perturbation`; frame,
class and figures: :mod:`wsol_bench.metrics.faithfulness`.

Keys: ``deletion_auc`` (mean over images), ``deletion_auc_ci95`` (Student-t), ``deletion_auc_std``,
``deletion_auc_n_images``, ``deletion_auc_n_without_state``, ``deletion_baseline``,
``deletion_n_steps``, ``deletion_crop``; per image ``deletion_auc``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from wsol_bench.metrics.faithfulness import RiseAuc


@dataclass
class Deletion(RiseAuc):
    """Deletion AUC (lower is better); parameters in :class:`~wsol_bench.metrics.faithfulness.RiseAuc`."""

    name: ClassVar[str] = "deletion"
    mode: ClassVar[str] = "deletion"
    columns: ClassVar[tuple[str, ...]] = ("deletion_auc",)
    count_key: ClassVar[str] = "deletion_auc"


__all__ = ["Deletion"]
