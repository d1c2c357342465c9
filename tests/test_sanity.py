"""Similarity of maps (Spearman, SSIM) and the randomisation-test figures."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

from wsol_bench.figures import save_figure
from wsol_bench.figures.sanity import sanity_figure, similarity_figure
from wsol_bench.metrics.similarity import minmax, rank_correlation, ssim


def smooth(seed: int, shape=(32, 40)) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.random.default_rng(seed).random(shape), 2).astype(np.float32)


def test_identical_maps_are_fully_similar():
    a = smooth(0)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 3 * a + 1) == pytest.approx(1.0)  # min-max normalised: scale and offset do not count


def test_negation_and_absolute_values():
    a = smooth(1) - 0.5  # signed
    b = np.abs(a)
    assert rank_correlation(a, -a, absolute=True) == pytest.approx(1.0)
    assert rank_correlation(a, -a, absolute=False) == pytest.approx(-1.0)
    assert rank_correlation(a, b, absolute=True) == pytest.approx(1.0)
    assert rank_correlation(a, b, absolute=False) < 0.9
    positive = smooth(2)
    assert ssim(positive, -positive) < 0.0  # min-max of -m is 1 - min-max of m: anti-correlated structure


def test_spearman_is_pearson_of_average_ranks():
    a, b = smooth(3), smooth(4)
    a[:4] = 0  # ties
    ra, rb = rankdata(a.ravel()), rankdata(b.ravel())
    assert rank_correlation(a, b) == pytest.approx(np.corrcoef(ra, rb)[0, 1])


def test_a_permuted_map_is_dissimilar():
    a = smooth(5, (64, 64))
    shuffled = np.random.default_rng(6).permutation(a.ravel()).reshape(a.shape)
    assert abs(rank_correlation(a, shuffled)) < 0.1
    assert ssim(a, shuffled) < 0.2


def test_ssim_is_skimages_on_minmax_maps():
    a, b = smooth(7) * 5, smooth(8) + 2
    expected = structural_similarity(minmax(a), minmax(b), data_range=1.0)
    assert ssim(a, b) == pytest.approx(expected)
    assert minmax(a).min() == 0.0 and minmax(a).max() == 1.0


def test_constant_maps_are_defined_without_warnings():
    a, flat = smooth(9), np.full((32, 40), 0.3, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rank_correlation(a, flat) == 0.0 and rank_correlation(flat, a) == 0.0
        assert rank_correlation(flat, np.zeros_like(flat)) == 1.0
        assert ssim(flat, np.zeros_like(flat)) == pytest.approx(1.0)
        assert -1.0 <= ssim(a, flat) < 0.1
    assert np.array_equal(minmax(flat), np.zeros_like(flat))


def test_bad_maps_raise():
    a = smooth(10)
    with pytest.raises(ValueError, match=r"second map has shape \(32, 39\)"):
        rank_correlation(a, a[:, :39])
    with pytest.raises(ValueError, match="NaN"):
        ssim(a, np.where(a > 0.5, np.nan, a))
    with pytest.raises(ValueError, match="at least 7 x 7"):
        ssim(a[:6], a[:6])


def test_sanity_figure_panels(tmp_path):
    image = (np.random.default_rng(11).random((48, 64, 3)) * 255).astype(np.uint8)
    stages = ["classifier", "conv_head+bn2", "blocks.6"]
    maps = {m: [smooth(s, (24, 32)) for s in range(4)] for m in ("gradient", "grad_cam")}
    fig = sanity_figure(image, maps, stages)
    assert len(fig.axes) == 1 + 2 * (1 + 3)
    titles = [t.get_text() for t in fig.texts]
    assert {"image", "trained", "classifier", "blocks.6", "gradient", "grad_cam"} <= set(titles)
    assert save_figure(fig, tmp_path / "sanity.png").is_file()
    with pytest.raises(ValueError, match="3 maps for the trained model and 3 stages"):
        sanity_figure(image, {"gradient": maps["gradient"][:3]}, stages)


def test_similarity_figure_lines_and_spread(tmp_path):
    stages = ["classifier", "conv_head+bn2", "blocks.6"]
    rng = np.random.default_rng(12)
    values = {m: rng.random((5, 3)) for m in ("gradient", "grad_cam")}
    values["gradient"][0, 1] = np.nan  # ignored
    fig = similarity_figure(stages, {"Spearman": values, "SSIM": {m: v / 2 for m, v in values.items()}})
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2 + 1  # one per method and the zero line
        assert len(ax.collections) == 2  # the shaded spreads
        assert [t.get_text() for t in ax.get_xticklabels()] == stages
    line = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_ydata(), np.nanmean(values["gradient"], axis=0))
    assert save_figure(fig, tmp_path / "similarity.png").is_file()
