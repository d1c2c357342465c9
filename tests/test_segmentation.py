"""Tests of wsol_bench.segmentation: saliency map -> box (GraphCut, GrabCut, threshold, baselines).

Synthetic scenes: an object of one colour on a background of blocks of other colours, with
a noisy saliency map that peaks on the object (edges and inside) plus a few bright outlier
pixels at least 5 pixels away from it. Boxes are 0-based inclusive (x0, y0, x1, y1).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsol_bench.boxes import Box, iou_inclusive
from wsol_bench.segmentation import BOX_EXTRACTORS, Localisation, box_extractor
from wsol_bench.segmentation.baselines import center_box
from wsol_bench.segmentation.components import (
    CONSTANT_MAP,
    EMPTY_FOREGROUND,
    NAN_MAP,
    NONPOSITIVE_MAP,
    TOO_FEW_SEEDS,
    mask_localisation,
    seed_masks,
    select_components,
    working_size,
)
from wsol_bench.segmentation.graphcut import (
    OFFSETS,
    GraphCut,
    min_cut,
    pairwise_weights,
)
from wsol_bench.segmentation.mixtures import (
    fit_gmm,
    log_likelihoods,
    quadratic_features,
)

SALIENCY_METHODS = ("graphcut", "grabcut", "threshold")
REPO = Path(__file__).resolve().parents[1]
METHODS = ("graphcut", "grabcut", "threshold", "full_image", "center")
Coords = tuple[int, int, int, int]


def synthetic_scene(
    height: int = 72, width: int = 96, box: Coords = (30, 20, 69, 51), seed: int = 0, outliers: int = 20,
    noise: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, Coords]:
    """(RGB uint8 image, float32 saliency map, true inclusive box)."""
    rng = np.random.default_rng(seed)
    palette = np.array([[40, 160, 60], [60, 80, 200], [150, 150, 150], [220, 200, 90]])
    blocks = rng.integers(0, len(palette), size=(height // 6 + 1, width // 6 + 1))
    image = palette[np.kron(blocks, np.ones((6, 6), int))[:height, :width]].astype(np.float64)
    x0, y0, x1, y1 = box
    image[y0:y1 + 1, x0:x1 + 1] = (200, 40, 40)
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    obj = np.zeros((height, width), np.float32)
    obj[y0:y1 + 1, x0:x1 + 1] = 1
    edges = cv2.GaussianBlur(cv2.morphologyEx(obj, cv2.MORPH_GRADIENT, np.ones((3, 3))), (0, 0), 1.5)
    saliency = obj * (0.5 + 2 * edges) + rng.uniform(0, noise, (height, width))
    ys, xs = rng.integers(0, height, 4 * outliers), rng.integers(0, width, 4 * outliers)
    away = (xs < x0 - 4) | (xs > x1 + 4) | (ys < y0 - 4) | (ys > y1 + 4)  # isolated false peaks
    saliency[ys[away][:outliers], xs[away][:outliers]] += 1.5
    return image, saliency.astype(np.float32), box


PAPER = dict(fg_quantile=0.95, smooth_sigma=0.0, max_side=None, keep_components="largest")


def paper_extractor(method: str, **fields: object):
    """The paper's settings (those the method has): these unit tests check the method itself,
    not the tuned defaults."""
    names = {f.name for f in dataclasses.fields(BOX_EXTRACTORS.get(method))}
    return box_extractor(method, **{**{k: v for k, v in PAPER.items() if k in names}, **fields})


def localise(method: str, image: np.ndarray, saliency: np.ndarray, **overrides: object) -> Localisation:
    segmenter = paper_extractor(method, **overrides)
    return segmenter.localise(segmenter.prepare(image), saliency)


def iou(a, b) -> float:
    return float(iou_inclusive(np.array(tuple(a)), np.array(tuple(b))))


def assert_valid(loc: Localisation, height: int, width: int) -> None:
    x0, y0, x1, y1 = loc.box
    assert isinstance(loc.box, Box) and all(isinstance(v, int) for v in loc.box)
    assert 0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height
    if loc.mask is not None:
        assert loc.mask.shape == (height, width) and loc.mask.dtype == bool


# ----------------------------------------------------------------------------- accuracy


@pytest.mark.parametrize("method", SALIENCY_METHODS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_object_found(method: str, seed: int) -> None:
    image, saliency, truth = synthetic_scene(seed=seed)
    loc = localise(method, image, saliency)
    assert loc.fallback is None
    assert_valid(loc, *saliency.shape)
    assert iou(loc.box, truth) > 0.9
    inside = loc.mask[truth[1]:truth[3] + 1, truth[0]:truth[2] + 1]
    assert inside.mean() > (0.8 if method == "threshold" else 0.95)  # threshold: holes of the noisy map


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_tall_image_and_smoothing(method: str) -> None:
    image, saliency, (x0, y0, x1, y1) = synthetic_scene(seed=3)
    image, saliency = image.transpose(1, 0, 2).copy(), saliency.T.copy()  # 96 x 72
    loc = localise(method, image, saliency, smooth_sigma=1.0)
    assert_valid(loc, 96, 72)
    # blurring widens the thresholded region by about a pixel on each side: 34 x 42 for 32 x 40
    assert iou(loc.box, (y0, x0, y1, x1)) > (0.85 if method == "threshold" else 0.9)


def test_graphcut_soft_seeds() -> None:
    image, saliency, truth = synthetic_scene(seed=4)
    assert iou(localise("graphcut", image, saliency, hard_seeds=False).box, truth) > 0.9


def test_grabcut_soft_foreground_seeds() -> None:
    image, saliency, truth = synthetic_scene(seed=4)
    assert iou(localise("grabcut", image, saliency, hard_seeds=False).box, truth) > 0.9


# ----------------------------------------------------------------------------- degenerate input


def degenerate_maps(height: int, width: int) -> dict[str, tuple[np.ndarray, str]]:
    nan = np.random.default_rng(0).random((height, width)).astype(np.float32)
    nan[1, 1] = np.nan
    inf = nan.copy()
    inf[1, 1] = np.inf
    return {
        "constant": (np.full((height, width), 0.7, np.float32), CONSTANT_MAP),
        "zero": (np.zeros((height, width), np.float64), CONSTANT_MAP),
        "nan": (nan, NAN_MAP),
        "inf": (inf, NAN_MAP),
    }


@pytest.mark.parametrize("method", SALIENCY_METHODS)
@pytest.mark.parametrize("kind", ["constant", "zero", "nan", "inf"])
def test_degenerate_map_falls_back(method: str, kind: str) -> None:
    image, _, _ = synthetic_scene()
    saliency, reason = degenerate_maps(72, 96)[kind]
    for smooth in (0.0, 2.0):
        loc = localise(method, image, saliency, smooth_sigma=smooth, max_side=48)
        assert loc == Localisation(box=Box(0, 0, 95, 71), mask=None, fallback=reason)


def test_threshold_nonpositive_map() -> None:
    image, saliency, _ = synthetic_scene()
    loc = localise("threshold", image, saliency - saliency.max() - 1.0)
    assert loc.fallback == NONPOSITIVE_MAP and loc.box.coords == (0, 0, 95, 71)


@pytest.mark.parametrize("method", ["graphcut", "grabcut"])
def test_too_few_seeds(method: str) -> None:
    image = np.random.default_rng(0).integers(0, 255, (1, 30, 3), dtype=np.uint8)
    saliency = np.linspace(0, 1, 30, dtype=np.float32)[None]  # 2 foreground seeds < 5 components
    loc = localise(method, image, saliency)
    assert loc == Localisation(box=Box(0, 0, 29, 0), mask=None, fallback=TOO_FEW_SEEDS)


def test_empty_foreground_falls_back() -> None:
    assert select_components(np.zeros((4, 5), bool), "largest")[1] is None
    loc = mask_localisation(np.zeros((4, 5), bool), (8, 10), "largest")
    assert loc == Localisation(box=Box(0, 0, 9, 7), mask=None, fallback=EMPTY_FOREGROUND)


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_shape_mismatch_raises(method: str) -> None:
    image, saliency, _ = synthetic_scene()
    segmenter = paper_extractor(method)
    with pytest.raises(ValueError, match="frame"):
        segmenter.localise(segmenter.prepare(image), saliency.T)


# ----------------------------------------------------------------------------- odd sizes


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_tiny_non_square_image(method: str) -> None:
    # 20 wide x 13 high (smaller than a 224 crop); object at columns 6..13, rows 3..9
    image, saliency, truth = synthetic_scene(height=13, width=20, box=(6, 3, 13, 9), outliers=0)
    loc = localise(method, image, saliency)
    assert_valid(loc, 13, 20)
    assert loc.fallback is None
    assert iou(loc.box, truth) > 0.7


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_one_pixel_wide_object(method: str) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 120, (40, 30, 3)).astype(np.uint8)
    image[5:35, 12] = (250, 250, 20)
    saliency = rng.uniform(0, 0.15, (40, 30)).astype(np.float32)
    saliency[5:35, 12] = 1.0
    loc = localise(method, image, saliency)
    assert_valid(loc, 40, 30)
    assert loc.fallback is None
    x0, y0, x1, y1 = loc.box
    assert x0 >= 10 and x1 <= 14 and y0 <= 6 and y1 >= 33


@pytest.mark.parametrize("method", [*SALIENCY_METHODS, "full_image", "center"])
@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (1, 1), (2, 3)])
def test_degenerate_image_shapes_do_not_crash(method: str, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    saliency = rng.random(shape).astype(np.float32)
    for max_side in (None, 7):
        extra = dict(max_side=max_side, smooth_sigma=1.0) if method in SALIENCY_METHODS else {}
        loc = localise(method, image, saliency, **extra)
        assert_valid(loc, *shape)


# ----------------------------------------------------------------------------- determinism, reuse


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_deterministic_across_runs_and_objects(method: str) -> None:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)  # no structure: ties and noise
    saliency = cv2.GaussianBlur(rng.random((48, 64)).astype(np.float32), (0, 0), 3)
    seed = {} if method == "threshold" else {"seed": 3}
    first = paper_extractor(method, **seed)
    prepared = first.prepare(image)
    a, b = first.localise(prepared, saliency), first.localise(prepared, saliency)
    second = pickle.loads(pickle.dumps(paper_extractor(method, **seed)))
    c = second.localise(second.prepare(image), saliency)
    assert a.box == b.box == c.box
    assert np.array_equal(a.mask, b.mask) and np.array_equal(a.mask, c.mask)


@pytest.mark.parametrize("method", SALIENCY_METHODS)
def test_prepare_once_reuse(method: str) -> None:
    image, _, _ = synthetic_scene(seed=5)
    maps = [synthetic_scene(seed=s)[1] for s in (5, 6, 7)] + [np.zeros((72, 96), np.float32)]
    segmenter = paper_extractor(method)
    prepared = segmenter.prepare(image)
    reused = [segmenter.localise(prepared, m) for m in maps]
    fresh = [segmenter.localise(segmenter.prepare(image), m) for m in maps]
    for r, f in zip(reused, fresh):
        assert r.box == f.box and r.fallback == f.fallback
        assert (r.mask is None and f.mask is None) or np.array_equal(r.mask, f.mask)


# ----------------------------------------------------------------------------- frames


@pytest.mark.parametrize("method", SALIENCY_METHODS)
@pytest.mark.parametrize("max_side", [48, 150])
def test_max_side_box_in_input_frame(method: str, max_side: int) -> None:
    image, saliency, truth = synthetic_scene(seed=1)
    loc = localise(method, image, saliency, max_side=max_side)
    assert_valid(loc, 72, 96)
    assert loc.mask is not None and loc.mask.shape == (72, 96)
    assert iou(loc.box, truth) > 0.85


def test_working_size() -> None:
    assert working_size(256, 384, None) == (256, 384)
    assert working_size(256, 384, 192) == (128, 192)
    assert working_size(384, 256, 192) == (192, 128)
    assert working_size(3, 1000, 100) == (1, 100)
    assert working_size(20, 13, 40) == (40, 26)


def test_keep_all_components() -> None:
    image = np.zeros((30, 40, 3), np.uint8)
    saliency = np.zeros((30, 40), np.float32)
    saliency[2:6, 3:8] = 1.0  # 20 px
    saliency[20:28, 25:35] = 1.0  # 80 px
    assert localise("threshold", image, saliency).box.coords == (25, 20, 34, 27)
    loc = localise("threshold", image, saliency, keep_components="all")
    assert loc.box.coords == (3, 2, 34, 27) and loc.mask.sum() == 100


# ----------------------------------------------------------------------------- baselines


def test_baselines_exact_boxes_ignore_map() -> None:
    image = np.zeros((100, 60, 3), np.uint8)
    nan_map = np.full((100, 60), np.nan)
    full = localise("full_image", image, nan_map)
    assert full == Localisation(box=Box(0, 0, 59, 99), mask=None, fallback=None)
    center = localise("center", image, nan_map)
    assert center == Localisation(box=Box(7, 12, 51, 86), mask=None, fallback=None)  # 45 x 75
    assert localise("center", image, None, fraction=0.5).box.coords == (15, 25, 44, 74)
    assert localise("center", image, None, fraction=1.0).box == Box.full((100, 60))
    assert center_box(13, 20, 0.75).coords == (2, 1, 16, 10)  # 15 x 10
    assert center_box(1, 1, 0.1).coords == (0, 0, 0, 0)


# ----------------------------------------------------------------------------- pieces


def test_seed_masks_quantiles_and_ties() -> None:
    sal = np.arange(100, dtype=np.float32).reshape(10, 10)
    fg, bg = seed_masks(sal, 0.95, 0.30)
    assert fg.sum() == 5 and bg.sum() == 30 and not (fg & bg).any()
    sparse = np.zeros((10, 10), np.float32)
    sparse[0, :3] = 1.0  # 97% zeros: both quantiles are 0
    fg, bg = seed_masks(sparse, 0.95, 0.30)
    assert fg.sum() == 3 and bg.sum() == 97
    mostly_max = np.ones((10, 10), np.float32)
    mostly_max[0, :20 // 2] = 0.0  # 90% at the maximum
    fg, bg = seed_masks(mostly_max, 0.95, 0.30)
    assert fg.sum() == 90 and bg.sum() == 10


def test_pairwise_weights_match_definition() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (4, 5, 3)).astype(np.float32)
    weights, beta = pairwise_weights(img, 50.0)
    pairs = []
    for y, x in itertools.product(range(4), range(5)):
        for k, (dy, dx) in enumerate(OFFSETS):
            if 0 <= y + dy < 4 and 0 <= x + dx < 5:
                pairs.append((y, x, k, float(((img[y, x] - img[y + dy, x + dx]) ** 2).sum()), math.hypot(dy, dx)))
            else:
                assert weights[k][y, x] == 0
    assert len(pairs) == 4 * 4 * 5 - 3 * 4 - 3 * 5 + 2  # every undirected 8-neighbour pair once
    expected_beta = 1 / (2 * np.mean([p[3] for p in pairs]))
    assert beta == pytest.approx(expected_beta, rel=1e-6)
    for y, x, k, d2, dist in pairs:
        assert weights[k][y, x] == pytest.approx(50 * math.exp(-expected_beta * d2) / dist, rel=1e-5)


def test_min_cut_is_the_energy_minimum() -> None:
    """Brute force over all 2^12 labellings of a 3 x 4 image, with and without hard seeds."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (3, 4, 3), dtype=np.uint8)
    prepared = paper_extractor("graphcut", pairwise_weight=20.0).prepare(image)
    weights, _ = pairwise_weights(image.astype(np.float32), 20.0)
    preference = rng.normal(0, 15, (3, 4))
    fg = np.zeros((3, 4), bool)
    bg = np.zeros((3, 4), bool)
    fg[1, 1], bg[0, 3] = True, True

    def energy(labels: np.ndarray) -> float:
        e = float(preference[~labels].sum())
        for k, (dy, dx) in enumerate(OFFSETS):
            for y, x in itertools.product(range(3), range(4)):
                if 0 <= y + dy < 3 and 0 <= x + dx < 4 and labels[y, x] != labels[y + dy, x + dx]:
                    e += weights[k][y, x]
        return e

    for seeds in (None, (fg, bg)):
        best = math.inf
        for bits in range(1 << 12):
            labels = ((bits >> np.arange(12)) & 1).astype(bool).reshape(3, 4)
            if seeds is not None and (not labels[fg].all() or labels[bg].any()):
                continue
            best = min(best, energy(labels))
        mask = min_cut(prepared, preference, seeds)
        assert energy(mask) == pytest.approx(best, abs=1e-6)
        if seeds is not None:
            assert mask[fg].all() and not mask[bg].any()


def log_likelihood(model, colours: np.ndarray) -> np.ndarray:
    """``(N,)`` float64 log density of RGB rows under ``model``."""
    return log_likelihoods(quadratic_features(colours, np.float64), [model])[0]


def test_gmm_scores_match_sklearn_and_fit_is_deterministic() -> None:
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    x = np.clip(np.concatenate([rng.normal(60, 12, (600, 3)), rng.normal(190, 6, (400, 3))]), 0, 255)
    model = fit_gmm(x, 5, seed=0)
    # scikit-learn scores the same parameters (set by hand: no sklearn fit, which is slow to start)
    reference = GaussianMixture(5, covariance_type="full")
    reference.weights_, reference.means_ = model.weights, model.means
    reference.precisions_cholesky_ = model.precisions_cholesky
    pixels = rng.uniform(0, 255, (5000, 3)).astype(np.float32)
    expected = reference.score_samples(pixels)
    np.testing.assert_allclose(log_likelihood(model, pixels), expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(log_likelihoods(quadratic_features(pixels), [model])[0], expected,
                               rtol=1e-5, atol=1e-2)
    # the budgeted EM is within 0.05 nats/sample of EM run to convergence
    converged = fit_gmm(x, 5, seed=0, max_iter=500, tol=1e-9)
    assert log_likelihood(model, x).mean() > log_likelihood(converged, x).mean() - 0.05
    again = fit_gmm(x, 5, seed=0)
    np.testing.assert_array_equal(model.means, again.means)
    np.testing.assert_array_equal(model.precisions_cholesky, again.precisions_cholesky)
    flat = fit_gmm(np.full((8, 3), 100.0), 5, seed=0)  # one colour: finite, via the covariance floor
    assert np.isfinite(log_likelihood(flat, np.array([[100.0, 100.0, 100.0], [0.0, 0.0, 0.0]]))).all()


# ----------------------------------------------------------------------------- config


def test_extractors_are_checked_picklable_parameter_objects() -> None:
    threshold = box_extractor("threshold", threshold=0.5)
    assert type(threshold).__name__ == "Threshold" and threshold.threshold == 0.5
    for method in METHODS:  # plain picklable objects (sent to worker processes)
        extractor = box_extractor(method)
        assert pickle.loads(pickle.dumps(extractor)) == extractor and extractor.name == method
    for method, bad, message in (
        ("nope", {}, "segmentation.method='nope' is not one of center, full_image, grabcut, graphcut, threshold"),
        ("graphcut", dict(fg_quantile=0.2), "segmentation.fg_quantile=0.2: must be in (bg_quantile=0.3, 1]"),
        ("graphcut", dict(keep_components="some"), "segmentation.keep_components='some': must be one of"),
        ("grabcut", dict(max_side=0), "segmentation.max_side=0: must be null or >= 1"),
        ("center", dict(fraction=0.0), "segmentation.fraction=0.0: must be in (0, 1]"),
        ("threshold", dict(threshold=1.0), "segmentation.threshold=1.0: must be in [0, 1)"),
        ("threshold", dict(fg_quantile=0.5), "segmentation.fg_quantile: not a parameter of Threshold"),
    ):
        with pytest.raises(ValueError) as err:
            box_extractor(method, **bad)
        assert message in str(err.value)


def test_conf_files_compose(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from wsol_bench.config import register_configs
    from wsol_bench.tasks.factory import box_extractor_from

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base=None):
        for name in METHODS:
            cfg = compose(config_name="config", overrides=[f"segmentation={name}"])
            assert box_extractor_from(cfg).name == name


@pytest.mark.parametrize("seed", [0, 1])
def test_tuned_defaults_find_the_synthetic_object(seed: int) -> None:
    """The tuned defaults (smoothing, 160-pixel segmentation, all components) still localise."""
    image, saliency, truth = synthetic_scene(seed=seed)
    segmenter = box_extractor("graphcut")
    loc = segmenter.localise(segmenter.prepare(image), saliency)
    assert loc.fallback is None
    assert_valid(loc, *saliency.shape)
    assert iou(loc.box, truth) > 0.85


def test_graphcut_reestimation_refits_the_colour_models_on_the_cut(monkeypatch) -> None:
    image, saliency, truth = synthetic_scene(seed=2)
    fitted: list[tuple[int, int]] = []  # (role, number of pixels the model was fitted to)
    original = GraphCut._fit

    def spy(self, colours, pixels, role):
        fitted.append((role, int(pixels.sum())))
        return original(self, colours, pixels, role)

    monkeypatch.setattr(GraphCut, "_fit", spy)
    once = localise("graphcut", image, saliency)
    assert [r for r, _ in fitted] == [0, 1]
    seeds = fitted[:]
    fitted.clear()
    again = localise("graphcut", image, saliency, reestimate=2)
    assert [r for r, _ in fitted] == [0, 1] * 3 and fitted[:2] == seeds  # first from the seeds, then twice more
    work = np.ones(again.seeds[0].shape, bool)
    assert fitted[2][1] + fitted[3][1] == work.sum()  # refitted on the cut: object + background = every pixel
    assert fitted[2][1] > seeds[0][1]  # the object model now sees the whole object, not its seeds only
    assert iou(again.box, truth) > 0.9 and iou(once.box, truth) > 0.9
