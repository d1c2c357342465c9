"""GraphCut localisation from a saliency map (Section 3.1 of the paper; Boykov & Jolly 2001).

Per class map (in the working frame, see :mod:`~wsol_bench.segmentation.components`):

1. seeds: foreground = map >= its ``fg_quantile`` quantile (0.95 in the paper),
   background = map <= its ``bg_quantile`` quantile (0.30);
2. colour models: a Gaussian mixture with ``gmm_components`` full-covariance components
   fitted to the RGB values (0..255) of each seed set (:mod:`~wsol_bench.segmentation.mixtures`:
   seeded k-means++ initialisation then EM; deterministic for a given ``seed``). At most
   ``max_fit_samples`` seed pixels per model are used, drawn without replacement by a
   generator seeded with ``(seed, model)``;
3. energy: unary = negative log-likelihood under each model; pairwise = the
   contrast-sensitive Potts term of Boykov & Jolly / GrabCut,
   ``pairwise_weight * exp(-beta * ||z_m - z_n||^2) / dist(m, n)`` over the
   8-neighbourhood, ``beta = 1 / (2 * mean ||z_m - z_n||^2)`` over all neighbour pairs of
   the image (``beta = 0`` for a flat image);
4. seeds as hard constraints when ``hard_seeds`` (the paper does not say whether its seeds
   are hard; Boykov & Jolly's are): seed pixels get a terminal capacity ``K = 1 +`` the
   largest sum of pairwise weights at any pixel, so no cut can relabel them. With
   ``hard_seeds=false`` the seeds only train the colour models;
5. min-cut with PyMaxflow (source = object); with ``reestimate = n > 0`` the colour models
   are then refitted to the object and background pixels of the cut and the cut is redone,
   ``n`` times (GrabCut's iterated estimation, Rother et al. 2004; hard seeds stay hard);
   the object mask is every foreground pixel (``keep_components='largest'``: the largest
   8-connected foreground component, the paper's), its bounding box the result.

The image-only terms (colours, beta, the grid graph with its pairwise edges) are built once
in :meth:`GraphCut.prepare`; each ``localise`` copies that graph and adds the
terminal edges. Choices the paper leaves open and this module fixes: 8-neighbourhood,
``pairwise_weight`` (gamma, 50 as in GrabCut), the covariance floor
(:data:`~wsol_bench.segmentation.mixtures.REG_COVAR`), and the EM budget (``em_max_iter``,
``em_tol``), chosen for speed. Time per class is dominated by the max-flow itself (about 70% at a 256 x 384 frame); see
``bench/segmentation.py`` and ``segmentation.max_side`` to trade resolution for speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import maxflow
import numpy as np

from wsol_bench.boxes import Size
from wsol_bench.frames import resize_to
from wsol_bench.registry import require
from wsol_bench.segmentation import Localisation
from wsol_bench.segmentation.components import (
    TOO_FEW_SEEDS,
    SeededExtractor,
    check_image,
    fallback_localisation,
    mask_localisation,
    seed_masks,
    working_map,
    working_size,
)
from wsol_bench.segmentation.mixtures import (
    EM_MAX_ITER,
    EM_TOL,
    GaussianMixtureModel,
    fit_gmm,
    log_likelihoods,
    quadratic_features,
)

# Neighbour offsets (dy, dx): each undirected pair of the 8-neighbourhood once.
OFFSETS: tuple[tuple[int, int], ...] = ((0, 1), (1, 0), (1, 1), (1, -1))

MAX_FIT_SAMPLES = 1000  # seed pixels per colour model used for fitting


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
    """Per-image state of :class:`GraphCut` (process-local: holds a PyMaxflow graph).

    ``colours``: (h*w, 3) float32 RGB of the working frame, raster order; ``features``: their
    (10, h*w) float32 :func:`quadratic_features`; ``graph``: the grid with its pairwise edges
    and no terminal edges (copied by each ``localise``); ``hard_cap``: the terminal capacity
    of hard seeds.
    """

    input_size: Size
    work_size: Size
    colours: np.ndarray
    features: np.ndarray
    graph: maxflow.GraphFloat
    nodes: np.ndarray
    beta: float
    hard_cap: float


@dataclass(frozen=True)
class GraphCut(SeededExtractor):
    """The paper's GraphCut localisation; see the module docstring. Picklable; no global state.

    Defaults are the settings tuned on real validation images (docs/tuning.md); the
    paper's are ``fg_quantile=0.95, smooth_sigma=0, max_side=None, keep_components=largest``
    (``+experiment=ilsvrc2013``).
    """

    name: ClassVar[str] = "graphcut"
    gmm_components: int = 5  # full-covariance components per colour model
    pairwise_weight: float = 50.0  # gamma of the contrast-sensitive Potts term
    max_fit_samples: int = MAX_FIT_SAMPLES  # seed pixels drawn per colour model
    em_max_iter: int = EM_MAX_ITER
    em_tol: float = EM_TOL
    reestimate: int = 0  # GrabCut-style rounds: refit the colour models on the cut's labels, cut again

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.reestimate >= 0, "reestimate", self.reestimate, ">= 0")
        require(self.gmm_components >= 1, "gmm_components", self.gmm_components, ">= 1")
        require(self.pairwise_weight >= 0, "pairwise_weight", self.pairwise_weight, ">= 0")
        require(self.max_fit_samples >= 1, "max_fit_samples", self.max_fit_samples, ">= 1")
        require(self.em_max_iter >= 0, "em_max_iter", self.em_max_iter, ">= 0")
        require(self.em_tol > 0, "em_tol", self.em_tol, "> 0")

    def prepare(self, image: np.ndarray) -> GraphCutPrepared:
        """Resize to the working frame; colours, beta and the pairwise grid graph."""
        input_size = check_image(image)
        work_size = working_size(*input_size, self.max_side)
        colours = resize_to(image, work_size).astype(np.float32)
        weights, beta = pairwise_weights(colours, float(self.pairwise_weight))
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
        rng_seed = (int(self.seed), role)
        if idx.size > self.max_fit_samples:
            idx = np.sort(np.random.default_rng(rng_seed).choice(idx, self.max_fit_samples, replace=False))
        return fit_gmm(colours[idx], self.gmm_components, rng_seed, max_iter=self.em_max_iter, tol=self.em_tol)

    def localise(self, prepared: GraphCutPrepared, saliency: np.ndarray) -> Localisation:
        """Box of the object in ``saliency`` (``(H, W)``, the prepared image's frame)."""
        sal, reason = working_map(saliency, prepared.input_size, prepared.work_size, self.smooth_sigma)
        if reason is not None or sal is None:
            return fallback_localisation(prepared.input_size, reason or "nan_map")
        fg, bg = seed_masks(sal, self.fg_quantile, self.bg_quantile)
        if min(int(fg.sum()), int(bg.sum())) < self.gmm_components:
            return fallback_localisation(prepared.input_size, TOO_FEW_SEEDS)
        seeds = (fg, bg) if self.hard_seeds else None
        object_pixels, background_pixels = fg, bg
        for _ in range(1 + self.reestimate):
            fg_model = self._fit(prepared.colours, object_pixels, 0)
            bg_model = self._fit(prepared.colours, background_pixels, 1)
            ll_fg, ll_bg = log_likelihoods(prepared.features, [fg_model, bg_model])
            mask = min_cut(prepared, (ll_fg - ll_bg).reshape(prepared.work_size), seeds)
            if min(int(mask.sum()), int((~mask).sum())) < self.gmm_components:
                break  # nothing left to re-estimate a model from
            object_pixels, background_pixels = mask, ~mask
        result = mask_localisation(mask, prepared.input_size, self.keep_components)
        result.seeds = (fg, bg)
        return result


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
