"""Full-covariance Gaussian mixtures over RGB colours, fitted by a seeded numpy EM.

A Gaussian's log density is linear in the quadratic monomials of x, so the log-probability
of every component for every pixel is one small matrix product with the image's (10, N)
feature matrix, computed once per image (:func:`quadratic_features`). Colours are centred
(x - COLOUR_CENTRE) first so that float32 keeps ~1e-3 nats of accuracy.

Why not scikit-learn's ``GaussianMixture``: its per-fit overhead (~15 ms for 1000 samples)
exceeded GraphCut's time budget, with two fits per class map. The tests check the scores
of :func:`fit_gmm`'s models against scikit-learn's float64 ``score_samples``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

KMEANS_MAX_ITER = 10  # Lloyd iterations of the initialisation (stops earlier when labels settle)
EM_MAX_ITER = 10  # EM iterations after the k-means initialisation
EM_TOL = 1e-3  # stop EM when the mean log-likelihood per sample changes by less (nats)
REG_COVAR = 1.0  # added to covariance diagonals, in (0..255 intensity)^2: keeps flat colours finite
COLOUR_CENTRE = 127.5
_IU = np.triu_indices(3, k=1)  # (0,1), (0,2), (1,2)


def quadratic_features(colours: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """``(10, N)`` features ``[x0², x1², x2², x0x1, x0x2, x1x2, x0, x1, x2, 1]`` of centred
    RGB rows ``colours`` (N, 3), in ``dtype``."""
    x = np.asarray(colours, dtype=dtype).T - dtype(COLOUR_CENTRE)
    feats = np.empty((10, x.shape[1]), dtype=dtype)
    np.multiply(x, x, out=feats[0:3])
    for row, (i, j) in enumerate(zip(*_IU), start=3):
        np.multiply(x[i], x[j], out=feats[row])
    feats[6:9] = x
    feats[9] = 1
    return feats


@dataclass(frozen=True)
class GaussianMixtureModel:
    """A full-covariance Gaussian mixture over RGB (0..255): ``weights`` (K,), ``means``
    (K, 3) and ``precisions_cholesky`` (K, 3, 3) with ``precision_k = L_k L_k^T``
    (scikit-learn's convention, so ``(x - mean_k) @ L_k`` is whitened)."""

    weights: np.ndarray
    means: np.ndarray
    precisions_cholesky: np.ndarray

    def coefficients(self) -> np.ndarray:
        """``(K, 10)``: row k dotted with :func:`quadratic_features` of x is
        ``log(weight_k * N(x; mean_k, cov_k))``."""
        prec = self.precisions_cholesky @ np.swapaxes(self.precisions_cholesky, 1, 2)
        mu = self.means - COLOUR_CENTRE
        a_mu = np.einsum("kde,ke->kd", prec, mu)
        log_det = np.log(np.diagonal(self.precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)
        coef = np.empty((self.weights.shape[0], 10))
        coef[:, 0:3] = -0.5 * np.diagonal(prec, axis1=1, axis2=2)
        coef[:, 3:6] = -prec[:, _IU[0], _IU[1]]
        coef[:, 6:9] = a_mu
        coef[:, 9] = (np.log(self.weights) + log_det - 1.5 * math.log(2 * math.pi)
                      - 0.5 * np.einsum("kd,kd->k", mu, a_mu))
        return coef


def _logsumexp_cols(a: np.ndarray) -> np.ndarray:
    """``log(sum(exp(a), axis=0))`` of a (K, N) array without overflow."""
    if a.shape[0] == 1:
        return a[0]
    top = a.max(axis=0)
    return top + np.log(np.exp(a - top).sum(axis=0))


def _m_step(feats: np.ndarray, resp: np.ndarray, reg: float) -> GaussianMixtureModel:
    """Maximum-likelihood mixture for responsibilities ``resp`` (K, N) of the samples whose
    float64 :func:`quadratic_features` are ``feats`` (10, N), with ``reg`` added to the
    covariance diagonals. Moments come from one product ``resp @ feats.T``."""
    sums = resp @ feats.T  # (K, 10): weighted sums of x_i x_j, x_i and 1
    nk = sums[:, 9] + 10 * np.finfo(np.float64).eps
    mu = sums[:, 6:9] / nk[:, None]  # centred means
    second = np.empty((resp.shape[0], 3, 3))
    idx = np.arange(3)
    second[:, idx, idx] = sums[:, 0:3]
    second[:, _IU[0], _IU[1]] = sums[:, 3:6]
    second[:, _IU[1], _IU[0]] = sums[:, 3:6]
    cov = second / nk[:, None, None] - mu[:, :, None] * mu[:, None, :]
    cov[:, idx, idx] += reg
    chol = np.linalg.cholesky(cov)  # lower
    prec_chol = np.swapaxes(np.linalg.inv(chol), 1, 2)  # inv(L)^T: upper
    return GaussianMixtureModel(weights=nk / nk.sum(), means=mu + COLOUR_CENTRE, precisions_cholesky=prec_chol)


def _kmeans_labels(x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int) -> np.ndarray:
    """Labels of ``k``-means of the rows of ``x`` (k-means++ seeding from ``rng``, then at
    most ``max_iter`` Lloyd iterations; an emptied cluster keeps its centre)."""
    n = x.shape[0]
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    d2 = ((x - centres[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = d2.sum()
        idx = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centres[j] = x[idx]
        d2 = np.minimum(d2, ((x - centres[j]) ** 2).sum(axis=1))
    labels = np.full(n, -1)
    onehot = np.zeros((k, n))
    cols = np.arange(n)
    for _ in range(max_iter):
        new = ((centres**2).sum(axis=1)[:, None] - 2.0 * (centres @ x.T)).argmin(axis=0)
        if np.array_equal(new, labels):
            break
        labels = new
        onehot[:] = 0.0
        onehot[labels, cols] = 1.0
        counts = onehot.sum(axis=1)
        filled = counts > 0
        centres[filled] = (onehot @ x)[filled] / counts[filled, None]
    return labels


def fit_gmm(
    x: np.ndarray,
    n_components: int,
    seed: int | Sequence[int],
    *,
    max_iter: int = EM_MAX_ITER,
    tol: float = EM_TOL,
    reg: float = REG_COVAR,
    kmeans_iter: int = KMEANS_MAX_ITER,
) -> GaussianMixtureModel:
    """Fit a full-covariance mixture to RGB rows ``x`` (N >= 1, 3), deterministically.

    Initialisation: hard assignment by k-means (k-means++ seeded with ``seed``); then EM
    until the mean log-likelihood per sample changes by less than ``tol`` nats or after
    ``max_iter`` iterations. ``n_components`` is capped at N.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    k = max(1, min(int(n_components), n))
    labels = _kmeans_labels(x, k, np.random.default_rng(seed), kmeans_iter)
    resp = np.zeros((k, n))
    resp[labels, np.arange(n)] = 1.0
    feats = quadratic_features(x, np.float64)
    model = _m_step(feats, resp, reg)
    previous = -np.inf
    for _ in range(max_iter):
        log_prob = model.coefficients() @ feats
        log_norm = _logsumexp_cols(log_prob)
        mean_ll = float(log_norm.mean())
        if abs(mean_ll - previous) < tol:
            break
        previous = mean_ll
        model = _m_step(feats, np.exp(log_prob - log_norm), reg)
    return model


def log_likelihoods(features: np.ndarray, models: Sequence[GaussianMixtureModel]) -> list[np.ndarray]:
    """``(N,)`` log density under each model of the pixels whose :func:`quadratic_features`
    are ``features`` (10, N); one matrix product for all components of all models, in the
    dtype of ``features``."""
    coefs = [m.coefficients() for m in models]
    log_prob = np.concatenate(coefs).astype(features.dtype) @ features
    out: list[np.ndarray] = []
    start = 0
    for coef in coefs:
        out.append(_logsumexp_cols(log_prob[start:start + coef.shape[0]]))
        start += coef.shape[0]
    return out
