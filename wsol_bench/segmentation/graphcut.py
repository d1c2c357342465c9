"""GraphCut localisation from a saliency map (Section 3.1 of the paper; Boykov & Jolly 2001).

Per class map (in the working frame, see :mod:`~wsol_bench.segmentation.components`):

1. seeds: foreground = map >= its ``fg_quantile`` quantile (0.95 in the paper),
   background = map <= its ``bg_quantile`` quantile (0.30);
2. colour models: a Gaussian mixture with ``gmm_components`` full-covariance components
   fitted to the RGB values (0..255) of each seed set (:func:`fit_gmm`: seeded k-means++
   initialisation then EM; deterministic for a given ``cfg.seed``). At most
   ``max_fit_samples`` seed pixels per model are used, drawn without replacement by a
   generator seeded with ``(cfg.seed, model)``. The mixture code is a small numpy EM
   rather than scikit-learn's ``GaussianMixture``, whose per-fit overhead (~15 ms for 1000
   samples) exceeded the time budget; the tests check its scores against scikit-learn's;
3. energy: unary = negative log-likelihood under each model; pairwise = the
   contrast-sensitive Potts term of Boykov & Jolly / GrabCut,
   ``pairwise_weight * exp(-beta * ||z_m - z_n||^2) / dist(m, n)`` over the
   8-neighbourhood, ``beta = 1 / (2 * mean ||z_m - z_n||^2)`` over all neighbour pairs of
   the image (``beta = 0`` for a flat image);
4. seeds as hard constraints when ``hard_seeds`` (the paper does not say whether its seeds
   are hard; Boykov & Jolly's are): seed pixels get a terminal capacity ``K = 1 +`` the
   largest sum of pairwise weights at any pixel, so no cut can relabel them. With
   ``hard_seeds=false`` the seeds only train the colour models;
5. min-cut with PyMaxflow (source = object); the object mask is the largest 8-connected
   foreground component (``keep_components='all'``: every foreground pixel), its bounding
   box the result.

The image-only terms (colours, beta, the grid graph with its pairwise edges) are built once
in :meth:`GraphCutSegmenter.prepare`; each ``localise`` copies that graph and adds the
terminal edges. Choices the paper leaves open and this module fixes: 8-neighbourhood,
``pairwise_weight`` (gamma, 50 as in GrabCut), the covariance floor :data:`REG_COVAR`, and
the EM budget (:data:`EM_MAX_ITER`, :data:`EM_TOL`), chosen for speed. Time per class is
dominated by the max-flow itself (about 70% at a 256 x 384 frame); see
``bench/segmentation.py`` and ``segmentation.max_side`` to trade resolution for speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import maxflow
import numpy as np

from wsol_bench.config import SegmentationConfig
from wsol_bench.segmentation import Localisation
from wsol_bench.segmentation.components import (
    TOO_FEW_SEEDS,
    Size,
    check_image,
    fallback_localisation,
    mask_localisation,
    resize_image,
    seed_masks,
    working_map,
    working_size,
)

# Neighbour offsets (dy, dx): each undirected pair of the 8-neighbourhood once.
OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))

MAX_FIT_SAMPLES = 1000  # seed pixels per colour model used for fitting
KMEANS_MAX_ITER = 10  # Lloyd iterations of the initialisation (stops earlier when labels settle)
EM_MAX_ITER = 10  # EM iterations after the k-means initialisation
EM_TOL = 1e-3  # stop EM when the mean log-likelihood per sample changes by less (nats)
REG_COVAR = 1.0  # added to covariance diagonals, in (0..255 intensity)^2: keeps flat colours finite


# ----------------------------------------------------------------------------- mixtures
#
# A Gaussian's log density is linear in the quadratic monomials of x, so the log-probability
# of every component for every pixel is one small matrix product with the image's (10, N)
# feature matrix, computed once per image. Colours are centred (x - COLOUR_CENTRE) first so
# that float32 keeps ~1e-3 nats of accuracy (tested against scikit-learn's float64 scores).

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

    def log_likelihood(self, colours: np.ndarray) -> np.ndarray:
        """``(N,)`` log density of RGB rows ``colours`` (N, 3), in float64."""
        return _logsumexp_cols(self.coefficients() @ quadratic_features(colours, np.float64))


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


# ----------------------------------------------------------------------------- graph


def pairwise_weights(colours: np.ndarray, gamma: float) -> tuple[list[np.ndarray], float]:
    """Contrast-sensitive Potts weights of an ``(H, W, 3)`` float image, one ``(H, W)``
    array per offset of :data:`OFFSETS` (entry ``[y, x]``: edge to ``(y+dy, x+dx)``; 0 where
    that neighbour is outside), and ``beta``."""
    h, w = colours.shape[:2]
    sq_diffs: list[tuple[tuple[slice, slice], np.ndarray]] = []
    total, count = 0.0, 0
    for dy, dx in OFFSETS:
        src = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
        dst = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
        d2 = ((colours[src] - colours[dst]) ** 2).sum(axis=2)
        sq_diffs.append((src, d2))
        total += float(d2.sum(dtype=np.float64))
        count += d2.size
    mean = total / count if count else 0.0
    beta = 1.0 / (2.0 * mean) if mean > 0 else 0.0
    weights: list[np.ndarray] = []
    for (dy, dx), (src, d2) in zip(OFFSETS, sq_diffs):
        wgt = np.zeros((h, w), dtype=np.float64)
        wgt[src] = (gamma / math.hypot(dy, dx)) * np.exp(-beta * d2.astype(np.float64))
        weights.append(wgt)
    return weights, beta


def _structure(dy: int, dx: int) -> np.ndarray:
    s = np.zeros((3, 3))
    s[1 + dy, 1 + dx] = 1.0
    return s


@dataclass
class GraphCutPrepared:
    """Per-image state of :class:`GraphCutSegmenter` (process-local: holds a PyMaxflow graph).

    ``colours``: (h*w, 3) float32 RGB of the working frame, raster order; ``features``: their
    (10, h*w) float32 :func:`quadratic_features`; ``graph``: the grid with its pairwise edges
    and no terminal edges (copied by each ``localise``); ``hard_cap``: the terminal capacity
    of hard seeds.
    """

    input_size: Size
    work_size: Size
    colours: np.ndarray
    features: np.ndarray
    graph: "maxflow.GraphFloat"
    nodes: np.ndarray
    beta: float
    hard_cap: float


class GraphCutSegmenter:
    """The paper's GraphCut localisation; see the module docstring. Picklable; no global state."""

    def __init__(
        self,
        cfg: SegmentationConfig,
        *,
        max_fit_samples: int = MAX_FIT_SAMPLES,
        em_max_iter: int = EM_MAX_ITER,
        em_tol: float = EM_TOL,
    ) -> None:
        self.cfg = cfg
        self.max_fit_samples = int(max_fit_samples)
        self.em_max_iter = int(em_max_iter)
        self.em_tol = float(em_tol)

    def prepare(self, image: np.ndarray) -> GraphCutPrepared:
        """Resize to the working frame; colours, beta and the pairwise grid graph."""
        input_size = check_image(image)
        work_size = working_size(*input_size, self.cfg.max_side)
        colours = resize_image(image, work_size).astype(np.float32)
        weights, beta = pairwise_weights(colours, float(self.cfg.pairwise_weight))
        h, w = work_size
        graph = maxflow.Graph[float](h * w, 4 * h * w)
        nodes = graph.add_grid_nodes((h, w))
        incident = np.zeros((h, w))
        for (dy, dx), wgt in zip(OFFSETS, weights):
            graph.add_grid_edges(nodes, weights=wgt, structure=_structure(dy, dx), symmetric=True)
            incident += wgt
            incident[dy:, max(0, dx):w - max(0, -dx)] += wgt[: h - dy, max(0, -dx):w - max(0, dx)]
        return GraphCutPrepared(
            input_size=input_size,
            work_size=work_size,
            colours=colours.reshape(-1, 3),
            features=quadratic_features(colours.reshape(-1, 3)),
            graph=graph,
            nodes=nodes,
            beta=beta,
            hard_cap=1.0 + float(incident.max()),
        )

    def _fit(self, colours: np.ndarray, seeds: np.ndarray, role: int) -> GaussianMixtureModel:
        idx = np.flatnonzero(seeds.ravel())
        rng_seed = (int(self.cfg.seed), role)
        if idx.size > self.max_fit_samples:
            idx = np.sort(np.random.default_rng(rng_seed).choice(idx, self.max_fit_samples, replace=False))
        return fit_gmm(colours[idx], self.cfg.gmm_components, rng_seed,
                       max_iter=self.em_max_iter, tol=self.em_tol)

    def localise(self, prepared: GraphCutPrepared, saliency: np.ndarray) -> Localisation:
        """Box of the object in ``saliency`` (``(H, W)``, the prepared image's frame)."""
        cfg = self.cfg
        sal, reason = working_map(saliency, prepared.input_size, prepared.work_size, cfg.smooth_sigma)
        if reason is not None:
            return fallback_localisation(prepared.input_size, reason)
        fg, bg = seed_masks(sal, cfg.fg_quantile, cfg.bg_quantile)
        if min(int(fg.sum()), int(bg.sum())) < cfg.gmm_components:
            return fallback_localisation(prepared.input_size, TOO_FEW_SEEDS)
        fg_model = self._fit(prepared.colours, fg, 0)
        bg_model = self._fit(prepared.colours, bg, 1)
        ll_fg, ll_bg = log_likelihoods(prepared.features, [fg_model, bg_model])
        preference = (ll_fg - ll_bg).reshape(prepared.work_size)
        seeds = (fg, bg) if cfg.hard_seeds else None
        return mask_localisation(min_cut(prepared, preference, seeds), prepared.input_size, cfg.keep_components)


def min_cut(
    prepared: GraphCutPrepared,
    preference: np.ndarray,
    hard_seeds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Object mask (working frame) minimising the GraphCut energy.

    ``preference``: ``(h, w)`` log-likelihood ratio ``log p(z|object) - log p(z|background)``
    (= unary(background) - unary(object)); ``hard_seeds``: ``(object, background)`` bool
    masks that the cut may not relabel, or ``None``. The energy is
    ``sum_p [p in background] * preference_p + sum_{p~q} w_pq [label_p != label_q]`` up to a
    constant, with the pairwise weights of ``prepared.graph``; source side = object.
    """
    pref = np.asarray(preference, dtype=np.float64)
    source = np.maximum(pref, 0.0)  # paid when the pixel is labelled background
    sink = np.maximum(-pref, 0.0)  # paid when labelled object
    if hard_seeds is not None:
        fg, bg = hard_seeds
        source[fg], sink[fg] = prepared.hard_cap, 0.0
        source[bg], sink[bg] = 0.0, prepared.hard_cap
    graph = prepared.graph.copy()
    graph.add_grid_tedges(prepared.nodes, source, sink)
    graph.maxflow()
    return ~graph.get_grid_segments(prepared.nodes)
