"""A random map: the baseline every attribution method should beat (``saliency=random``).

The map of a crop for class ``c`` is i.i.d. uniform noise in ``[0, 1)`` (no smoothing), one
value per pixel, drawn from a CPU ``torch.Generator`` seeded with BLAKE2b of ``seed``, ``c``
and the crop's float32 bytes: it depends only on the seed, the crop's content and the class,
so it is the same in any batch, at any position and on any device, and it does not depend on
the model at all (the randomisation test's similarity of a random map is 1 at every stage).

Cost: one forward pass per crop without gradients (for the logits, which choose the top-k
classes), no backward pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.registry import require
from wsol_bench.saliency.backprop import clean_scores
from wsol_bench.saliency.base import SaliencyMethod, SaliencyStep


def crop_digests(crops: torch.Tensor) -> list[bytes]:
    """BLAKE2b (16 bytes) of each crop's float32 bytes (CPU, contiguous)."""
    data = crops.detach().float().cpu().contiguous().numpy()
    return [hashlib.blake2b(crop.tobytes(), digest_size=16).digest() for crop in data]


def map_seed(seed: int, digest: bytes, target: int) -> int:
    """The 63-bit generator seed of one crop's map for class ``target``."""
    key = np.int64(seed).tobytes() + np.int64(target).tobytes() + digest
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


@dataclass(frozen=True)
class RandomMap(SaliencyMethod):
    """Uniform noise per pixel, seeded by ``seed``, the crop's content and the class."""

    seed: int = 0

    name: ClassVar[str] = "random"
    cost: ClassVar[tuple[str, str]] = ("1 per crop", "0")

    def __post_init__(self) -> None:
        require(isinstance(self.seed, int) and 0 <= self.seed < 2**63, "seed", self.seed,
                "a non-negative 64-bit integer")

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> RandomStep:
        """The crops' logits (one forward pass, no gradients); the maps need no network."""
        size = (crops.shape[2], crops.shape[3])
        return RandomStep(clean_scores(classifier, crops), crop_digests(crops), self.seed, size)


@dataclass
class RandomStep(SaliencyStep):
    logits: torch.Tensor
    digests: list[bytes]
    seed: int
    size: tuple[int, int]

    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.cpu()
        out = torch.zeros((targets.shape[0], len(self.digests), *self.size), dtype=torch.float32)
        for k in range(targets.shape[0]):
            for n, digest in enumerate(self.digests):
                c = int(targets[k, n])
                if c >= 0:
                    generator = torch.Generator().manual_seed(map_seed(self.seed, digest, c))
                    out[k, n] = torch.rand(self.size, generator=generator)
        return out


__all__ = ["RandomMap", "RandomStep", "crop_digests", "map_seed"]
