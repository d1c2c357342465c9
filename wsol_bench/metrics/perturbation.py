"""Deletion and insertion curves (Petsiuk, Das & Saenko, "RISE", BMVC 2018), the kernels of
their ``CausalMetric`` (eclique/RISE ``evaluation.py``) as plain functions.

* **Order** (:func:`pixel_order`): flat row-major pixel indices, most salient first; equal
  values keep their index order (a stable sort of the negated map), so a constant map
  gives ``0, 1, 2, ...``. RISE's ``np.flip(np.argsort(map))`` orders ties arbitrarily
  (reversed quicksort); it is the only difference from RISE's curves.
* **Steps**: ``step = ceil(H * W / n_steps)`` pixels per step (RISE's ``step`` and
  ``n_steps = ceil(HW / step)``; 56 steps of 896 pixels on a 224 x 224 frame). Point ``i``
  of the curve (``i = 0 .. n_steps``) is the image with the first ``min(step * i, H * W)``
  pixels of the order changed: *deletion* replaces them by the baseline (the image at
  ``i = 0``, the baseline at the end), *insertion* reveals them on the baseline. When
  ``step * (n_steps - 1) >= H * W`` (a few pixels, many steps) the last points repeat.
* **Score**: the softmax probability of ``target`` of ``logits_fn`` (RISE's model ends with
  a softmax), in float64 from the model's float32 softmax.
* :func:`auc` is RISE's normalised trapezoid ``(sum - first / 2 - last / 2) / (len - 1)``.

Spaces. The curves work in whatever space ``logits_fn`` takes: ``classifier.logits`` with
``[0, 1]`` RGB images, or ``classifier.module`` with normalised ones (RISE applies its
substrates to normalised tensors). :func:`make_baseline` builds the substrates in either
space, the same picture in both (``normalise(make_baseline(k, x, space="rgb")) ==
make_baseline(k, normalise(x), space="normalised")``):

* ``black``: RGB 0;
* ``mean``: the classifier's mean colour, i.e. 0 of its normalised input: RISE's deletion
  substrate (``torch.zeros_like`` of the normalised image);
* ``blur``: RISE's insertion substrate, the normalised image convolved per channel with
  ``gkern(11, 5)`` (a unit impulse smoothed by ``scipy.ndimage.gaussian_filter`` with sigma
  5, reflect mode, on an 11 x 11 grid) with zero padding; zero padding of the normalised
  image is padding with the mean colour in RGB.

:func:`rise_baseline` picks RISE's pair (``mean`` for deletion, ``blur`` for insertion).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from wsol_bench.registry import require

MODES = ("deletion", "insertion")
BASELINES = ("black", "mean", "blur")
SPACES = ("rgb", "normalised")
#: RISE's blur kernel: 11 x 11, sigma 5.
BLUR_SIZE = 11
BLUR_SIGMA = 5.0

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def check_map(saliency: np.ndarray | torch.Tensor, shape: tuple[int, ...] | None = None,
              what: str = "saliency") -> np.ndarray:
    """``saliency`` as a 2-D float array; ``ValueError`` naming ``what`` for another
    dimensionality, a shape other than ``shape`` (``(H, W)``) or a NaN."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().cpu().numpy()
    m = np.asarray(saliency)
    if m.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (H, W) map, got shape {m.shape}")
    if shape is not None and m.shape != tuple(shape):
        raise ValueError(f"{what} has shape {m.shape} but the image is {tuple(shape)} (H, W)")
    if not np.issubdtype(m.dtype, np.floating) and not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"{what} must be numeric, got dtype {m.dtype}")
    nan = np.isnan(m) if np.issubdtype(m.dtype, np.floating) else np.zeros(m.shape, bool)
    if nan.any():
        y, x = np.argwhere(nan)[0]
        raise ValueError(f"{what} has {int(nan.sum())} NaN value(s), the first at (y={y}, x={x})")
    return m


def check_image(image: torch.Tensor, what: str = "image") -> torch.Tensor:
    """``image`` unless it is not a floating ``(3, H, W)`` tensor (``ValueError`` naming ``what``)."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        shape = tuple(image.shape) if hasattr(image, "shape") else type(image).__name__
        raise ValueError(f"{what} must be a (3, H, W) tensor, got {shape}")
    if not image.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {image.dtype}")
    return image


def pixel_order(saliency: np.ndarray | torch.Tensor) -> np.ndarray:
    """Flat row-major indices (int64) of the map's pixels, most salient first; ties by lower index.

    ``ValueError`` for a NaN (naming where) or a map that is not 2-D. A constant map gives
    ``arange(H * W)``.
    """
    key = check_map(saliency).astype(np.float64).ravel()  # exact for float32 and integer maps
    # stable sort of -key: equal values keep ascending index order (-0.0 == 0.0, so signed zeros tie)
    return np.argsort(-key, kind="stable").astype(np.int64)


def rank_map(order: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` int64 map of each pixel's position in ``order`` (0: first changed)."""
    ranks = np.empty(order.size, np.int64)
    ranks[order] = np.arange(order.size)
    return ranks.reshape(shape)


def step_size(n_pixels: int, n_steps: int) -> int:
    """RISE's pixels per step: ``ceil(n_pixels / n_steps)``."""
    require(isinstance(n_steps, int) and not isinstance(n_steps, bool) and n_steps >= 1, "n_steps", n_steps,
            "an integer >= 1")
    return math.ceil(n_pixels / n_steps)


def changed_counts(n_pixels: int, n_steps: int) -> np.ndarray:
    """Pixels changed at each of the ``n_steps + 1`` points: ``min(step * i, n_pixels)``."""
    step = step_size(n_pixels, n_steps)
    return np.minimum(step * np.arange(n_steps + 1, dtype=np.int64), n_pixels)


def gaussian_kernel(size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """RISE's ``gkern``: a unit impulse at the centre of a ``size x size`` grid smoothed by
    ``scipy.ndimage.gaussian_filter(sigma)`` (reflect mode, truncate 4), float32 (sums to 1)."""
    require(isinstance(size, int) and size >= 1 and size % 2 == 1, "size", size, "an odd integer >= 1")
    require(sigma > 0, "sigma", sigma, "> 0")
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1.0
    return gaussian_filter(impulse, sigma).astype(np.float32)


def blur(image: torch.Tensor, size: int = BLUR_SIZE, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """RISE's blur: each channel of ``(3, H, W)`` ``image`` convolved with :func:`gaussian_kernel`,
    zero padding (``size // 2``), same shape and dtype. RISE's ``conv2d`` with a ``(3, 3, k, k)``
    kernel that is zero off the channel diagonal is this per-channel convolution."""
    image = check_image(image)
    k = torch.from_numpy(gaussian_kernel(size, sigma)).to(image.device, image.dtype)
    weight = k.expand(3, 1, size, size)
    return F.conv2d(image[None], weight, padding=size // 2, groups=3)[0]


def make_baseline(kind: str, image: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                  space: str = "rgb") -> torch.Tensor:
    """The substrate ``kind`` (``black``, ``mean``, ``blur``; see the module doc) of ``image``,
    in ``image``'s ``space``: ``rgb`` (``[0, 1]``, for ``classifier.logits``) or
    ``normalised`` (``(x - mean) / std``, for ``classifier.module``). ``mean``/``std``: the
    classifier's normalisation (RGB)."""
    image = check_image(image)
    require(kind in BASELINES, "baseline", kind, f"one of {', '.join(BASELINES)}")
    require(space in SPACES, "space", space, f"one of {', '.join(SPACES)}")
    require(len(mean) == 3 and len(std) == 3 and all(s > 0 for s in std), "mean/std", (mean, std),
            "3 numbers each, std positive")
    m = torch.tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    if kind == "black":
        colour = torch.zeros_like(m) if space == "rgb" else -m / s
        return colour.expand_as(image).clone()
    if kind == "mean":
        colour = m if space == "rgb" else torch.zeros_like(m)
        return colour.expand_as(image).clone()
    if space == "normalised":
        return blur(image)
    return blur(image - m) + m  # = unnormalise(blur(normalise(image))): zero padding of the normalised image


def rise_baseline(mode: str, image: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                  space: str = "rgb") -> torch.Tensor:
    """RISE's substrate for ``mode``: ``mean`` for deletion, ``blur`` for insertion."""
    require(mode in MODES, "mode", mode, f"one of {', '.join(MODES)}")
    return make_baseline("mean" if mode == "deletion" else "blur", image, mean, std, space)


def perturbation_curve(
    logits_fn: LogitsFn,
    image: torch.Tensor,
    saliency: np.ndarray | torch.Tensor,
    target: int,
    mode: str,
    baseline: torch.Tensor,
    n_steps: int = 56,
    batch_size: int = 32,
) -> np.ndarray:
    """The deletion or insertion curve: ``n_steps + 1`` float64 probabilities of ``target``.

    ``logits_fn``: ``(B, 3, H, W) -> (B, C)`` logits (called under ``torch.no_grad``, on
    ``image``'s device, in batches of at most ``batch_size`` images); ``image`` and
    ``baseline``: ``(3, H, W)`` tensors in ``logits_fn``'s space (see :func:`make_baseline`);
    ``saliency``: the ``(H, W)`` map ordering the pixels (:func:`pixel_order`); ``mode``:
    ``deletion`` or ``insertion``. Every channel of a pixel changes together.
    """
    image = check_image(image)
    require(mode in MODES, "mode", mode, f"one of {', '.join(MODES)}")
    require(isinstance(batch_size, int) and batch_size >= 1, "batch_size", batch_size, "an integer >= 1")
    require(isinstance(target, (int, np.integer)) and not isinstance(target, bool) and target >= 0, "target",
            target, "a class index >= 0")
    h, w = image.shape[1:]
    baseline = check_image(baseline, "baseline")
    if baseline.shape != image.shape:
        raise ValueError(f"baseline has shape {tuple(baseline.shape)} but the image {tuple(image.shape)}")
    counts = changed_counts(h * w, n_steps)
    ranks = torch.from_numpy(rank_map(pixel_order(check_map(saliency, (h, w))), (h, w))).to(image.device)
    start, finish = (image, baseline.to(image)) if mode == "deletion" else (baseline.to(image), image)
    scores = np.empty(counts.size, np.float64)
    with torch.no_grad():
        for i in range(0, counts.size, batch_size):
            k = torch.from_numpy(counts[i:i + batch_size]).to(image.device)
            changed = (ranks[None] < k[:, None, None])[:, None]  # (b, 1, H, W)
            logits = logits_fn(torch.where(changed, finish, start))
            if logits.ndim != 2 or logits.shape[0] != k.numel():
                raise ValueError(f"logits_fn returned shape {tuple(logits.shape)} for {k.numel()} images: "
                                 "expected (B, num_classes)")
            if target >= logits.shape[1]:
                raise ValueError(f"target={target} but the model has {logits.shape[1]} classes")
            probs = torch.softmax(logits.float(), dim=1)[:, int(target)]
            scores[i:i + k.numel()] = probs.cpu().numpy()
    return scores


def auc(curve: Sequence[float] | np.ndarray) -> float:
    """RISE's normalised area under a curve of equally spaced points: ``(sum - first / 2 -
    last / 2) / (len - 1)``, the trapezoid rule on ``[0, 1]``."""
    a = np.asarray(curve, dtype=np.float64)
    if a.ndim != 1 or a.size < 2:
        raise ValueError(f"a curve must be 1-D with at least 2 points, got shape {a.shape}")
    return float((a.sum() - a[0] / 2 - a[-1] / 2) / (a.size - 1))


__all__ = [
    "BASELINES",
    "MODES",
    "auc",
    "blur",
    "changed_counts",
    "gaussian_kernel",
    "make_baseline",
    "perturbation_curve",
    "pixel_order",
    "rank_map",
    "rise_baseline",
    "step_size",
]
