"""Similarity of two saliency maps, as Adebayo et al. ("Sanity checks for saliency maps",
NeurIPS 2018) compare a trained model's map with a randomised model's.

* :func:`rank_correlation`: Spearman's rank correlation (``scipy.stats.spearmanr``, average
  ranks for ties) of the flattened maps, of their absolute values when ``absolute`` (the
  paper reports both; for the non-negative maps of this harness the two agree).
* :func:`ssim`: ``skimage.metrics.structural_similarity`` (its defaults: 7 x 7 uniform
  window, K1 0.01, K2 0.03) of the maps min-max normalised to ``[0, 1]``, ``data_range=1``.

Constant maps, where both are undefined by their formulas (zero variance), are defined
here and never warn: a constant map carries no ordering, so its rank correlation with a
non-constant map is 0, and two constant maps (no change) correlate 1; min-max
normalisation maps a constant map to all zeros, so SSIM stays defined (1 between two
constant maps, small against a structured one). Maps must be 2-D of the same shape,
without NaN, and at least 7 x 7 for SSIM.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity

from wsol_bench.metrics.perturbation import check_map

SSIM_WINDOW = 7  # skimage's default window


def _pair(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = check_map(a, what="first map").astype(np.float64)
    y = check_map(b, x.shape, what="second map").astype(np.float64)
    for m, what in ((x, "first map"), (y, "second map")):
        if not np.isfinite(m).all():
            raise ValueError(f"{what} has infinite values")
    return x, y


def _constant(m: np.ndarray) -> bool:
    return bool(m.size == 0 or np.all(m == m.flat[0]))


def rank_correlation(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, absolute: bool = True) -> float:
    """Spearman's rank correlation of two ``(H, W)`` maps (of ``|a|`` and ``|b|`` when
    ``absolute``), in ``[-1, 1]``; 0 when exactly one is constant, 1 when both are."""
    x, y = _pair(a, b)
    if absolute:
        x, y = np.abs(x), np.abs(y)
    cx, cy = _constant(x), _constant(y)
    if cx or cy:
        return 1.0 if cx and cy else 0.0
    return float(spearmanr(x.ravel(), y.ravel()).statistic)


def minmax(m: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(m - min) / (max - min)`` as float64; a constant map becomes all zeros."""
    x = check_map(m).astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def ssim(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """SSIM of two ``(H, W)`` maps (each at least 7 x 7) after :func:`minmax`, ``data_range=1``."""
    x, y = _pair(a, b)
    if min(x.shape) < SSIM_WINDOW:
        raise ValueError(f"ssim needs maps of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, got {x.shape}")
    return float(structural_similarity(minmax(x), minmax(y), data_range=1.0))


__all__ = ["minmax", "rank_correlation", "ssim"]
