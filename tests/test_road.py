"""ROAD: agreement with pytorch-grad-cam 1.5.7 (imputations, system, scores, noise draws),
the imputation's defining property without grad-cam, the binarisation, and the edge cases."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.ndimage import gaussian_filter
from scipy.sparse.linalg import spsolve

from wsol_bench.metrics.road import (
    NEIGHBOURS,
    PERCENTILES,
    RoadResult,
    grid_dissection_rank,
    impute,
    keep_mask,
    linear_system,
    road,
    road_imputations,
    road_scores,
    solve_system,
)


def grad_cam():
    """pytorch_grad_cam's ROAD modules, or a skip naming how to install them."""
    try:
        from pytorch_grad_cam.metrics import perturbation_confidence
        from pytorch_grad_cam.metrics import road as gc_road
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    except ImportError as err:
        pytest.skip(f"pytorch-grad-cam is not installed ({err}): pip install --no-deps grad-cam==1.5.7 ttach")
    return gc_road, perturbation_confidence, ClassifierOutputSoftmaxTarget


def smooth_map(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth float32 map scaled to [0, 1] (grad-cam's CAMs are)."""
    m = gaussian_filter(np.random.default_rng(seed).random((h, w)), 3)
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


def toy_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(8, 5),
    ).eval()


def test_imputations_equal_grad_cams_bit_for_bit():
    gc_road, pc, _ = grad_cam()
    image = torch.from_numpy(np.random.default_rng(1).standard_normal((3, 30, 41)).astype(np.float32))
    cam = smooth_map(30, 41)
    for order, remove in (("morf", pc.RemoveMostRelevantFirst), ("lerf", pc.RemoveLeastRelevantFirst)):
        for p in (10, 35, 50, 90):
            torch.manual_seed(11)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # numpy's __array_wrap__ deprecation inside grad-cam
                expected = remove(p, gc_road.NoisyLinearImputer())(image, torch.from_numpy(cam))
            assert torch.equal(impute(image, keep_mask(cam, p, order), generator=11), expected), (order, p)


def test_linear_system_equals_grad_cams():
    gc_road, _, _ = grad_cam()
    rng = np.random.default_rng(2)
    values = rng.standard_normal((3, 9, 13)).astype(np.float32)
    keep = rng.random((9, 13)) < 0.4
    keep[0, :] = False  # imputed pixels on the border and in the corners too
    a, b, flat = linear_system(values, keep)
    a_ref, b_ref = gc_road.NoisyLinearImputer.setup_sparse_system(keep.astype(np.float32), values,
                                                                  gc_road.neighbors_weights)
    assert (abs(a.tocsr() - sp.csr_matrix(a_ref)) > 0).nnz == 0
    np.testing.assert_array_equal(b, b_ref)
    np.testing.assert_array_equal(flat, np.flatnonzero(~keep.ravel()))
    assert [(n[0], n[1]) for n in gc_road.neighbors_weights] == [((r, c), w) for r, c, w in NEIGHBOURS]


def test_road_scores_equal_grad_cams_combined_and_averages():
    gc_road, _, target_cls = grad_cam()
    model = toy_cnn()
    image = torch.from_numpy(np.random.default_rng(3).standard_normal((3, 32, 40)).astype(np.float32))
    cam = smooth_map(32, 40, seed=4)
    targets = [target_cls(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(5)
        combined = gc_road.ROADCombined()(image[None], cam[None], targets, model)
        torch.manual_seed(5)
        morf = gc_road.ROADMostRelevantFirstAverage()(image[None], cam[None], targets, model)
        torch.manual_seed(5)
        lerf = gc_road.ROADLeastRelevantFirstAverage()(image[None], cam[None], targets, model)
        torch.manual_seed(5)
        morf_30 = gc_road.ROADMostRelevantFirst(30)(image[None], cam[None], targets, model)
    result = road(model, image, cam, 2, generator=5)
    assert result.combined == pytest.approx(float(combined[0]), abs=1e-6)
    assert road_scores(model, image, cam, 2, "morf", generator=5).mean() == pytest.approx(float(morf[0]), abs=1e-6)
    assert road_scores(model, image, cam, 2, "lerf", generator=5).mean() == pytest.approx(float(lerf[0]), abs=1e-6)
    assert road_scores(model, image, cam, 2, "morf", [30], generator=5)[0] == pytest.approx(float(morf_30[0]), abs=1e-6)
    assert result.combined == pytest.approx((result.lerf_mean - result.morf_mean) / 2, abs=1e-7)
    assert result.morf.shape == result.lerf.shape == (9,) and result.percentiles == PERCENTILES


@pytest.mark.slow  # more than a few seconds
def test_road_on_efficientnet_lite_equals_grad_cams():
    gc_road, _, target_cls = grad_cam()
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    image = torch.from_numpy(np.random.default_rng(6).standard_normal((3, 64, 64)).astype(np.float32))
    cam = smooth_map(64, 64, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(8)
        expected = gc_road.ROADCombined(percentiles=[20, 50, 80])(image[None], cam[None], [target_cls(9)], model)
    result = road(model, image, cam, 9, percentiles=[20, 50, 80], generator=8)
    assert result.combined == pytest.approx(float(expected[0]), abs=1e-6)


def test_imputed_pixels_are_the_weighted_mean_of_their_neighbours():
    """The defining property, checked without grad-cam (noise 0): each imputed pixel equals the
    mean of its in-image neighbours weighted 1/6 (direct) and 1/12 (diagonal)."""
    rng = np.random.default_rng(9)
    image = torch.from_numpy(rng.standard_normal((3, 11, 14)).astype(np.float32))
    keep = rng.random((11, 14)) < 0.3
    out = impute(image, keep, noise=0.0).numpy().astype(np.float64)
    assert np.array_equal(out[:, keep], image.numpy()[:, keep])
    for y, x in zip(*np.nonzero(~keep)):
        total, weights = np.zeros(3), 0.0
        for dy, dx, w in NEIGHBOURS:
            if 0 <= y + dy < 11 and 0 <= x + dx < 14:
                total += w * out[:, y + dy, x + dx]
                weights += w
        np.testing.assert_allclose(out[:, y, x], total / weights, atol=1e-5)


def test_dissection_order_solves_as_spsolve():
    rank = grid_dissection_rank(37, 29)
    assert sorted(rank.tolist()) == list(range(37 * 29)) and not rank.flags.writeable
    rng = np.random.default_rng(10)
    values = rng.standard_normal((3, 37, 29)).astype(np.float32)
    for fraction in (0.05, 0.5, 0.95):
        keep = rng.random((37, 29)) < fraction
        a, b, flat = linear_system(values, keep)
        np.testing.assert_allclose(solve_system(a, b, flat, (37, 29)), spsolve(a.tocsc(), b), atol=1e-10)


def test_binarisation_follows_grad_cam():
    ramp = (np.arange(100, dtype=np.float32) / 99).reshape(10, 10)
    morf = keep_mask(ramp, 30, "morf")  # keeps what lies below the 30th percentile
    assert morf.sum() == 30 and morf.ravel()[:30].all()
    lerf = keep_mask(ramp, 30, "lerf")  # keeps the most relevant 30 %: 1 - map below its 30th percentile
    assert lerf.sum() == 30 and lerf.ravel()[70:].all()
    zeros = ramp.copy()
    zeros[:4] = 0  # 40 % at the minimum: the threshold is 0 and MoRF keeps nothing below p = 39
    assert not keep_mask(zeros, 20, "morf").any() and not keep_mask(zeros, 39, "morf").any()
    assert keep_mask(zeros, 40, "morf").sum() == 40 and keep_mask(zeros, 50, "morf").sum() == 50


def test_constant_map_imputes_every_pixel_with_the_minimum_norm_solution():
    image = torch.from_numpy(np.random.default_rng(12).standard_normal((3, 32, 40)).astype(np.float32))
    constant = np.full((32, 40), 0.5, np.float32)
    for order in ("morf", "lerf"):
        assert not keep_mask(constant, 50, order).any()
    batch = road_imputations(image, constant, "morf", [10, 90], generator=13)
    noise = torch.randn((3, 32 * 40), generator=torch.Generator().manual_seed(13))
    assert torch.equal(batch[0], (0.01 * noise).reshape(3, 32, 40))  # 0 + noise: the mean colour in normalised space
    result = road(toy_cnn(), image, constant, 1, generator=13)
    assert np.isfinite(result.morf).all() and np.isfinite(result.lerf).all() and abs(result.combined) < 0.01
    try:
        gc_road, pc, _ = grad_cam()
    except pytest.skip.Exception:
        return
    torch.manual_seed(13)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pc.RemoveMostRelevantFirst(10, gc_road.NoisyLinearImputer())(image, torch.from_numpy(constant))
    torch.testing.assert_close(batch[0], expected, atol=1e-6, rtol=0)  # grad-cam's singular solve returns ~0


def test_same_generator_same_noise_other_seed_other_noise():
    image = torch.from_numpy(np.random.default_rng(14).standard_normal((3, 16, 16)).astype(np.float32))
    cam = smooth_map(16, 16)
    a = road_imputations(image, cam, "lerf", generator=1)
    assert torch.equal(a, road_imputations(image, cam, "lerf", generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, road_imputations(image, cam, "lerf", generator=2))
    assert torch.equal(road_imputations(image, cam, "lerf", noise=0.0, generator=1),
                       road_imputations(image, cam, "lerf", noise=0.0, generator=2))


def test_errors_name_the_problem():
    image, cam = torch.zeros(3, 8, 8), smooth_map(8, 8)
    bad = cam.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN value\(s\), the first at \(y=3, x=4\)"):
        road(toy_cnn(), image, bad, 0)
    for percentiles in ([0, 50], [50, 100], [-5], [150], []):
        with pytest.raises(ValueError, match="percentiles"):
            road(toy_cnn(), image, cam, 0, percentiles=percentiles)
    with pytest.raises(ValueError, match="order='top'"):
        keep_mask(cam, 50, "top")
    with pytest.raises(ValueError, match=r"saliency has shape \(8, 7\)"):
        road(toy_cnn(), image, cam[:, :7], 0)
    with pytest.raises(ValueError, match="noise=-0.1"):
        impute(image, cam > 0.5, noise=-0.1)
    with pytest.raises(ValueError, match="target=5"):
        road(toy_cnn(), image, cam, 5)
    assert isinstance(road(toy_cnn(), image, cam, 4, percentiles=[50]), RoadResult)
