"""The noise tunnel: any method's map averaged over noisy copies of the crop (SmoothGrad).

For a crop ``x`` (``[0, 1]`` RGB, before normalisation), a wrapped method ``M`` and class ``c``::

    map = 1/n * sum_s M_c(x + eps_s),   eps_s ~ N(0, sigma^2),   sigma = noise * (max(x) - min(x))

With ``M`` the paper's gradient this is SmoothGrad (Smilkov et al. 2017), as captum's
``NoiseTunnel(..., nt_type="smoothgrad")`` averages the wrapped attribution; it wraps any
method alike (Grad-CAM, guided backpropagation, a plugin). The average is of the wrapped
method's *maps* (for the gradient: ``mean_s max_c |dS_c/dx|``, the channel maximum taken
per noisy copy). ``noise`` is the paper's noise level ``sigma / (x_max - x_min)`` (the range
over the crop's pixels and channels, as the authors' code does). Noisy copies are not
clipped to ``[0, 1]``. The logits are the clean crops' (one forward pass without gradients).

Noise is seeded per crop: crop ``n``'s draws come from a CPU ``torch.Generator`` seeded with
a hash of ``seed`` and the crop's float32 bytes, samples drawn in order. A crop's map
therefore depends only on the crop, ``seed`` and the parameters: the same in any batch, at
any position, on any device (up to float rounding of the batched network).

Cost: one forward pass per crop for the scores, then ``n_samples`` times the wrapped
method's cost, ``max_batch`` network inputs at a time (or all the call's crops, if more).
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
from wsol_bench.saliency.base import SaliencyMethod, SaliencyStep, checked_maps


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
class NoiseTunnel(SaliencyMethod):
    """``mean_s method(x + noise_s)``: see the module docstring."""

    method: SaliencyMethod  # the wrapped method
    n_samples: int = 25  # noisy copies per crop
    noise: float = 0.15  # noise std / (max - min) of the crop
    seed: int = 0  # noise seed (combined with each crop's content)

    name: ClassVar[str] = "noise_tunnel"
    cost: ClassVar[tuple[str, str]] = ("1 + n_samples x the method's", "n_samples x the method's")
    #: network inputs per wrapped call (noisy copies x crops), at least the call's crops
    max_batch: ClassVar[int] = 32

    def __post_init__(self) -> None:
        require(isinstance(self.method, SaliencyMethod), "method", self.method, "a saliency method")
        require(1 <= self.n_samples <= 10_000, "n_samples", self.n_samples, "between 1 and 10000")
        require(0.0 <= self.noise <= 10.0, "noise", self.noise, "between 0 and 10")
        require(0 <= self.seed < 2**63, "seed", self.seed, "a non-negative 64-bit integer")

    @property
    def cacheable(self) -> bool:  # type: ignore[override]
        return self.method.cacheable

    def forward(self, classifier: Classifier, crops: torch.Tensor) -> SaliencyStep:
        """Scores of the clean crops (no gradients); the noisy copies' maps on request."""
        return NoisyStep(clean_scores(classifier, crops), crops.detach(), self, classifier)


@dataclass
class NoisyStep(SaliencyStep):
    logits: torch.Tensor
    crops: torch.Tensor
    tunnel: NoiseTunnel
    classifier: Classifier

    def maps(self, targets: torch.Tensor) -> torch.Tensor:
        """Per chunk of noisy copies, one call of the wrapped method on all their crops."""
        crops, tunnel = self.crops, self.tunnel
        n, size = crops.shape[0], tuple(crops.shape[2:])
        generators = crop_generators(crops, tunnel.seed)
        total = torch.zeros((targets.shape[0], n, *size), dtype=torch.float32)
        per_pass = max(1, tunnel.max_batch // n)
        for start in range(0, tunnel.n_samples, per_pass):
            samples = min(per_pass, tunnel.n_samples - start)
            noisy = crops[None] + crop_noise(crops, generators, samples, tunnel.noise)
            inner = tunnel.method.forward(self.classifier, noisy.flatten(0, 1))
            maps = checked_maps(tunnel.method, inner.maps(targets.repeat(1, samples)),
                                (targets.shape[0], samples * n, *size))
            total += maps.view(targets.shape[0], samples, n, *size).sum(1)
        total /= tunnel.n_samples
        total[(targets < 0).cpu()] = 0.0
        return total

