"""Metrics: evaluators with ``start`` / ``accumulate`` / ``compute`` (:mod:`~wsol_bench.metrics.base`).

:data:`METRICS` lists them by name (``evaluation.metrics`` in the config): ``ilsvrc``, the
devkit's top-k localisation and classification error with the GT-known error;
``maxboxacc``, MaxBoxAcc and MaxBoxAccV2 exactly as clovaai/wsolevaluation; ``pointing_game``,
TorchRay's pointing game for the ground-truth and the top-1 class; the faithfulness
metrics, which use the classifier: ``deletion`` and ``insertion`` (RISE's AUCs) and ``road``
(ROAD MoRF, LeRF and combined, as pytorch-grad-cam).
"""

from __future__ import annotations

from typing import Any

from wsol_bench.metrics.base import Evaluator, ImageResult, MapSample
from wsol_bench.registry import Registry

#: ``evaluation.metrics`` entries -> the evaluator's class (a dataclass of its parameters).
METRICS: Registry[type[Evaluator]] = Registry("evaluation.metrics", {
    "ilsvrc": "wsol_bench.metrics.ilsvrc:IlsvrcLocalisation",
    "maxboxacc": "wsol_bench.metrics.maxboxacc:MaxBoxAcc",
    "pointing_game": "wsol_bench.metrics.pointing_game:PointingGame",
    "deletion": "wsol_bench.metrics.deletion:Deletion",
    "insertion": "wsol_bench.metrics.insertion:Insertion",
    "road": "wsol_bench.metrics.road_metric:Road",
})


def evaluator(name: str, **params: Any) -> Evaluator:
    """The evaluator called ``name`` (or ``package.module:Class``) with ``params``, checked."""
    return METRICS.create(name, params, f"evaluation.{name}")


__all__ = ["METRICS", "Evaluator", "ImageResult", "MapSample", "evaluator"]
