"""A toy saliency method, box extractor and metric, each a few lines outside the engine
(tests/test_plugins.py runs them through the CLI and the Python API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from wsol_bench.boxes import Box
from wsol_bench.metrics import Evaluator
from wsol_bench.registry import require
from wsol_bench.saliency import TargetwiseMethod
from wsol_bench.segmentation import BoxExtractor, Localisation


@dataclass(frozen=True)
class CentreBlob(TargetwiseMethod):
    """A Gaussian blob at the crop's centre, whatever the class."""

    name: ClassVar[str] = "centre_blob"
    sigma: float = 0.25  # fraction of the crop side

    def __post_init__(self) -> None:
        require(self.sigma > 0, "sigma", self.sigma, "> 0")

    def attribute(self, classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n, _, h, w = crops.shape
        ys, xs = torch.meshgrid(torch.linspace(-0.5, 0.5, h), torch.linspace(-0.5, 0.5, w), indexing="ij")
        blob = torch.exp(-(xs**2 + ys**2) / (2 * self.sigma**2))
        return blob.expand(n, h, w).clone()


@dataclass(frozen=True)
class MapPeakBox(BoxExtractor):
    """A box of ``side`` x ``side`` pixels around the map's maximum."""

    name: ClassVar[str] = "map_peak_box"
    side: int = 20

    def prepare(self, image: np.ndarray) -> tuple[int, int]:
        return image.shape[:2]

    def localise(self, size: tuple[int, int], saliency: np.ndarray) -> Localisation:
        y, x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
        half = self.side // 2
        return Localisation(Box(x - half, y - half, x + half, y + half).clipped(size), None, None)


@dataclass
class PeakInBox(Evaluator):
    """Fraction of images whose ground-truth class map peaks inside one of its boxes, grown by
    ``margin`` pixels of the maps' frame on every side."""

    name: ClassVar[str] = "peak_in_box"
    needs_maps: ClassVar[bool] = True
    margin: int = 0
    hits: int = field(default=0, init=False)
    n: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        require(self.margin >= 0, "margin", self.margin, ">= 0")

    def start(self, ground_truth) -> None:
        self.hits, self.n = 0, len(ground_truth)

    def image_state(self, sample) -> bool:
        m = sample.map_of(sample.annotation.label)
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        scaled = [b.scaled(sample.original_size, m.shape) for b in sample.annotation.boxes]
        m = self.margin
        return any(b.xmin - m <= x <= b.xmax + m and b.ymin - m <= y <= b.ymax + m for b in scaled)

    def accumulate(self, results) -> None:
        self.hits += sum(bool(r.states.get(self.name)) for r in results)

    def compute(self) -> dict:
        return {"peak_in_box": self.hits / self.n}
