"""``road`` (Rong et al., ICML 2022) of the ground-truth class's map, as pytorch-grad-cam's
``ROADMostRelevantFirstAverage``, ``ROADLeastRelevantFirstAverage`` and ``ROADCombined``
compute it (:mod:`wsol_bench.metrics.road`, tested against grad-cam), on the 224 x 224 centre
crop (frame, class and figures: :mod:`wsol_bench.metrics.faithfulness`).

* The crop is normalised by the classifier (``classifier.normalise``) and scored through
  ``classifier.module``, as grad-cam is applied; the imputation noise (``noise`` 0.01) is in
  that normalised space.
* The map is min-max scaled to ``[0, 1]`` first (a constant map becomes zeros): grad-cam's
  CAMs are, and its LeRF order reads ``1 - map`` in float32, which ties the values of an
  unscaled gradient map (``~1e-4``) far less than it would ties of ``1e-8``; the scaling keeps
  the order.
* Noise draws come from a generator seeded with :func:`~wsol_bench.metrics.faithfulness.image_seed`
  of ``seed`` and the image id: each image's figures are the same in any process, batch or
  resumed run.

Per image and over images (means, Student-t intervals): ``road_morf`` (the change of the
class's probability when the most relevant pixels are imputed, averaged over the
percentiles 10..90; lower is better), ``road_lerf`` (least relevant imputed; higher is
better) and ``road_combined = (road_lerf - road_morf) / 2`` (higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from wsol_bench.metrics.base import MapSample
from wsol_bench.metrics.faithfulness import CROP, PerImageMeans, image_seed, perturbation_sample
from wsol_bench.metrics.road import NOISE, PERCENTILES, check_percentiles, road
from wsol_bench.metrics.similarity import minmax
from wsol_bench.registry import require
from wsol_bench.saliency.backprop import model_layout


@dataclass
class Road(PerImageMeans):
    """ROAD MoRF, LeRF and combined (see the module docstring).

    Parameters: ``percentiles`` (10, 20, ..., 90), ``noise`` (0.01), ``seed`` (0),
    ``batch_size`` (forward passes at a time, 4), ``crop`` (224).
    """

    name: ClassVar[str] = "road"
    columns: ClassVar[tuple[str, ...]] = ("road_morf", "road_lerf", "road_combined")
    percentiles: tuple[float, ...] = PERCENTILES
    noise: float = NOISE
    seed: int = 0
    batch_size: int = 4
    crop: int = CROP

    def __post_init__(self) -> None:
        self.percentiles = check_percentiles(self.percentiles)
        require(len(set(self.percentiles)) == len(self.percentiles), "percentiles", self.percentiles,
                "distinct numbers in (0, 100)")
        require(0.0 <= self.noise <= 10.0, "noise", self.noise, "between 0 and 10 (normalised input units)")
        require(isinstance(self.seed, int) and 0 <= self.seed < 2**63, "seed", self.seed,
                "a non-negative 64-bit integer")
        require(isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size", self.batch_size,
                "an integer >= 1")
        require(isinstance(self.crop, int) and self.crop >= 8, "crop", self.crop, "an integer >= 8 (pixels)")

    def image_state(self, sample: MapSample) -> dict[str, float] | None:
        item = perturbation_sample(sample, self.crop, self.name)
        if item is None:
            return None
        classifier = sample.classifier
        normalised = classifier.normalise(item.image[None])[0]
        saliency = minmax(item.saliency).astype("float32")
        result = road(lambda x: classifier.module(model_layout(x)), normalised, saliency, item.target, self.percentiles,
                      self.noise, image_seed(self.seed, sample.image_id), self.batch_size)
        return {"road_morf": result.morf_mean, "road_lerf": result.lerf_mean, "road_combined": result.combined}

    def compute(self) -> dict[str, Any]:
        out = super().compute()
        out.update(road_percentiles=list(self.percentiles), road_noise=self.noise, road_seed=self.seed,
                   road_crop=self.crop)
        return out


__all__ = ["Road"]
