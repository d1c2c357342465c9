"""SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the crop.

For a crop ``x`` (``[0, 1]`` RGB, before normalisation) and class ``c``::

    map = max_c  1/n * sum_s |dS_c/dx (x + eps_s)|_c,   eps_s ~ N(0, sigma^2),
    sigma = noise * (max(x) - min(x))

``noise`` is the paper's noise level ``sigma / (x_max - x_min)`` (its range over the crop's
pixels and channels, as the authors' code does; about 1 for a photograph). The absolute
value is taken per sample *before* averaging, as captum's ``NoiseTunnel(Saliency(...),
nt_type="smoothgrad")`` with ``Saliency``'s default ``abs=True``; the channel maximum
after. Noisy copies are not clipped to ``[0, 1]``.

Noise is seeded per crop: crop ``n``'s draws come from a CPU ``torch.Generator`` seeded
with a hash of ``seed`` and the crop's float32 bytes, samples drawn in order. A crop's map
therefore depends only on the crop, ``seed`` and the parameters: the same in any batch,
at any position, on any device (up to float rounding of the batched network).

Cost: one forward pass per crop for the scores, then per noisy copy one forward pass per
crop and one backward pass per crop and class rank (:mod:`~wsol_bench.saliency.backprop`),
``max_batch`` network inputs at a time (or all the call's crops, if more).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from wsol_bench.models import Classifier
from wsol_bench.registry import require
from wsol_bench.saliency.backprop import check_scores, clean_scores, model_layout, rank_gradients
from wsol_bench.saliency.base import SaliencyMethod, TargetChooser


def crop_generators(crops: torch.Tensor, seed: int) -> list[torch.Generator]:
    """One CPU generator per crop, seeded with BLAKE2b(``seed``, the crop's float32 bytes)."""
    data = crops.detach().float().cpu().contiguous().numpy()
    generators = []
    for crop in data:
        digest = hashlib.blake2b(np.int64(seed).tobytes() + crop.tobytes(), digest_size=8).digest()
        generators.append(torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1))
    return generators


def crop_noise(crops: torch.Tensor, generators: list[torch.Generator], samples: int, noise: float) -> torch.Tensor:
    """``(samples, N, 3, h, w)``: the next ``samples`` noise draws of each crop, std
    ``noise * (max - min)`` of the crop, on the crops' device."""
    n, shape = crops.shape[0], tuple(crops.shape[1:])
    unit = torch.stack([torch.randn((samples, *shape), generator=g) for g in generators], dim=1)
    spread = (crops.detach().flatten(1).amax(1) - crops.detach().flatten(1).amin(1)).float().cpu()
    return (unit * (noise * spread).view(1, n, 1, 1, 1)).to(crops.device, crops.dtype)


@dataclass(frozen=True)
class SmoothGrad(SaliencyMethod):
    """``max_c mean_s |dS/dx (x + noise_s)|``: see the module docstring."""

    n_samples: int = 25  # noisy copies per crop
    noise: float = 0.15  # noise std / (max - min) of the crop
    seed: int = 0  # noise seed (combined with each crop's content)

    name: ClassVar[str] = "smoothgrad"
    cost: ClassVar[tuple[str, str]] = ("1 + n_samples per crop", "n_samples per crop and class")
    #: network inputs per forward pass (noisy copies x crops), at least the call's crops
    max_batch: ClassVar[int] = 32

    def __post_init__(self) -> None:
        require(1 <= self.n_samples <= 10_000, "n_samples", self.n_samples, "between 1 and 10000")
        require(0.0 <= self.noise <= 10.0, "noise", self.noise, "between 0 and 10")
        require(0 <= self.seed < 2**63, "seed", self.seed, "a non-negative 64-bit integer")

    def attribute(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.rank_maps(classifier, crops, targets.view(1, -1))[0]

    def scores_and_maps(
        self, classifier: Classifier, crops: torch.Tensor, choose_targets: TargetChooser
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores of the clean crops (no gradients), then :meth:`rank_maps` of the chosen targets."""
        logits = clean_scores(classifier, crops)
        return logits, self.rank_maps(classifier, crops, choose_targets(logits))

    def rank_maps(self, classifier: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``(K, N, h, w)`` float32 CPU maps of ``targets`` (``(K, N)``, ``-1``: zero map):
        for each chunk of noisy copies one forward pass and one backward pass per rank."""
        crops = crops.detach()
        n = crops.shape[0]
        targets = targets.to(crops.device)
        generators = crop_generators(crops, self.seed)
        total = torch.zeros((targets.shape[0], *crops.shape), dtype=torch.float32, device=crops.device)
        per_pass = max(1, self.max_batch // n)
        with torch.enable_grad():
            for start in range(0, self.n_samples, per_pass):
                samples = min(per_pass, self.n_samples - start)
                noisy = crops[None] + crop_noise(crops, generators, samples, self.noise)
                x = model_layout(noisy.flatten(0, 1)).requires_grad_(True)
                logits = classifier.logits(x)
                check_scores(classifier, logits, x.shape[0])
                for k, grad in rank_gradients(logits, x, targets.repeat(1, samples)):
                    total[k] += grad.abs().view(samples, *crops.shape).sum(0).float()
        maps = (total / self.n_samples).amax(dim=2).cpu()
        maps[(targets < 0).cpu()] = 0.0
        return maps
