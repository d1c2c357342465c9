"""Deletion / insertion curves (RISE's CausalMetric): a curve computed by hand on a toy
linear model, the order and step rules, the AUC formula, the substrates, batching and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsol_bench.metrics.perturbation import (
    auc,
    blur,
    changed_counts,
    gaussian_kernel,
    make_baseline,
    perturbation_curve,
    pixel_order,
    rise_baseline,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def channel_sum_logits(x: torch.Tensor) -> torch.Tensor:
    """Logits ``[sum of channel 0, 0]``: ``p(class 0) = sigmoid(sum of channel 0)``."""
    s = x[:, 0].sum(dim=(1, 2))
    return torch.stack([s, torch.zeros_like(s)], dim=1)


def toy_image() -> torch.Tensor:
    """4 x 4: channel 0 holds 0.0, 0.1, ..., 1.5 row-major (sum 12.0); channels 1-2 noise."""
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 4, 4, generator=g)
    image[0] = torch.arange(16, dtype=torch.float32).reshape(4, 4) / 10
    return image


def sigmoid(values: list[float]) -> np.ndarray:
    return np.array([1 / (1 + math.exp(-v)) for v in values])


def test_deletion_and_insertion_curves_by_hand():
    image = toy_image()
    saliency = image[0].numpy()  # most salient = largest value: pixels 15, 14, ... first
    zeros = torch.zeros_like(image)
    # 4 steps of ceil(16 / 4) = 4 pixels: deleted values 1.5+1.4+1.3+1.2 = 5.4, then 3.8, 2.2, 0.6
    deletion = perturbation_curve(channel_sum_logits, image, saliency, 0, "deletion", zeros, n_steps=4)
    np.testing.assert_allclose(deletion, sigmoid([12.0, 6.6, 2.8, 0.6, 0.0]), rtol=1e-6)
    insertion = perturbation_curve(channel_sum_logits, image, saliency, 0, "insertion", zeros, n_steps=4)
    np.testing.assert_allclose(insertion, sigmoid([0.0, 5.4, 9.2, 11.4, 12.0]), rtol=1e-6)
    # the reverse order deletes the small values first
    reverse = perturbation_curve(channel_sum_logits, image, -saliency, 0, "deletion", zeros, n_steps=4)
    np.testing.assert_allclose(reverse, sigmoid([12.0, 11.4, 9.2, 5.4, 0.0]), rtol=1e-6)
    # target 1 is the complement
    other = perturbation_curve(channel_sum_logits, image, saliency, 1, "deletion", zeros, n_steps=4)
    np.testing.assert_allclose(other, 1 - deletion, atol=1e-7)  # float32 softmax
    assert deletion.dtype == np.float64 and deletion.shape == (5,)


def test_every_channel_of_the_first_pixels_is_changed_at_each_step():
    image, baseline = toy_image(), torch.full((3, 4, 4), -7.0)
    saliency = np.array([[0, 5, 0, 0], [0, 0, 9, 0], [0, 0, 0, 1], [0, 0, 0, 0]], np.float32)
    order = [6, 1, 11, 0, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15]  # ties by index
    seen: list[torch.Tensor] = []

    def recording(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return channel_sum_logits(x)

    perturbation_curve(recording, image, saliency, 0, "deletion", baseline, n_steps=16, batch_size=5)
    batch = torch.cat(seen)
    assert batch.shape == (17, 3, 4, 4) and [len(b) for b in seen] == [5, 5, 5, 2]
    for i in range(17):
        changed = np.zeros(16, bool)
        changed[order[:i]] = True
        flat = batch[i].reshape(3, 16)
        assert torch.equal(flat[:, changed], baseline.reshape(3, 16)[:, changed])
        assert torch.equal(flat[:, ~changed], image.reshape(3, 16)[:, ~changed])


def test_pixel_order_most_salient_first_ties_by_lower_index():
    np.testing.assert_array_equal(pixel_order(np.zeros((2, 3), np.float32)), np.arange(6))
    np.testing.assert_array_equal(pixel_order(np.array([[1.0, 2.0], [2.0, 1.0]])), [1, 2, 0, 3])
    np.testing.assert_array_equal(pixel_order(np.array([[0.0, -0.0], [3.0, 0.0]])), [2, 0, 1, 3])
    np.testing.assert_array_equal(pixel_order(torch.tensor([[1, 3], [2, 3]], dtype=torch.uint8)), [1, 3, 2, 0])


def test_constant_map_deletes_in_index_order():
    image = toy_image()
    zeros = torch.zeros_like(image)
    curve = perturbation_curve(channel_sum_logits, image, np.ones((4, 4)), 0, "deletion", zeros, n_steps=4)
    # rows deleted top first: remaining sums 12.0 - 0.6, - 2.2, - 3.8, - 5.4
    np.testing.assert_allclose(curve, sigmoid([12.0, 11.4, 9.2, 5.4, 0.0]), rtol=1e-6)


def test_step_rule_is_rises():
    counts = changed_counts(224 * 224, 56)
    assert counts[1] == 896 and counts[-1] == 224 * 224 and np.all(np.diff(counts) == 896)
    np.testing.assert_array_equal(changed_counts(16, 5), [0, 4, 8, 12, 16, 16])  # step ceil(16/5) = 4
    np.testing.assert_array_equal(changed_counts(10, 1), [0, 10])
    np.testing.assert_array_equal(changed_counts(10, 20), [0, *range(1, 11), *[10] * 10])


def test_auc_is_rises_normalised_trapezoid():
    assert auc([1.0, 0.0]) == 0.5
    assert auc([0.0, 1.0, 1.0]) == pytest.approx(0.75)
    curve = np.random.default_rng(0).random(57)
    assert auc(curve) == pytest.approx((curve.sum() - curve[0] / 2 - curve[-1] / 2) / 56)
    assert auc(curve) == pytest.approx(np.trapezoid(curve, np.linspace(0, 1, 57)))
    with pytest.raises(ValueError, match="at least 2 points"):
        auc([0.3])


def small_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(24, 7),
    ).eval()


def test_curves_do_not_depend_on_the_batch_size():
    model = small_cnn()
    g = torch.Generator().manual_seed(1)
    image, saliency = torch.rand(3, 12, 10, generator=g), torch.rand(12, 10, generator=g).numpy()
    base = make_baseline("blur", image, MEAN, STD)
    for mode in ("deletion", "insertion"):
        curves = [perturbation_curve(model, image, saliency, 3, mode, base, n_steps=13, batch_size=b)
                  for b in (1, 4, 64)]
        for c in curves[1:]:
            np.testing.assert_allclose(c, curves[0], atol=1e-6)
        with torch.no_grad():
            ends = [model(x[None]) for x in ((image, base) if mode == "deletion" else (base, image))]
        expected = [float(torch.softmax(e, 1)[0, 3]) for e in ends]
        np.testing.assert_allclose(curves[0][[0, -1]], expected, atol=1e-6)


def test_baselines_in_both_spaces_are_the_same_picture():
    g = torch.Generator().manual_seed(2)
    image = torch.rand(3, 20, 17, generator=g)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    normalised = (image - mean) / std
    assert torch.equal(make_baseline("black", image, MEAN, STD), torch.zeros_like(image))
    assert torch.allclose(make_baseline("mean", image, MEAN, STD), mean.expand_as(image))
    assert torch.equal(make_baseline("mean", normalised, MEAN, STD, space="normalised"), torch.zeros_like(image))
    for kind in ("black", "mean", "blur"):
        rgb = make_baseline(kind, image, MEAN, STD)
        norm = make_baseline(kind, normalised, MEAN, STD, space="normalised")
        torch.testing.assert_close((rgb - mean) / std, norm, atol=1e-5, rtol=0)
    assert torch.equal(rise_baseline("deletion", normalised, MEAN, STD, "normalised"), torch.zeros_like(image))
    assert torch.equal(rise_baseline("insertion", normalised, MEAN, STD, "normalised"), blur(normalised))


def test_blur_is_rises_gkern_convolution():
    k = gaussian_kernel()
    assert k.shape == (11, 11) and k.dtype == np.float32 and abs(k.sum() - 1) < 1e-6
    assert k[5, 5] == k.max() and np.allclose(k, k.T) and np.allclose(k, k[::-1])
    image = torch.rand(3, 16, 19, generator=torch.Generator().manual_seed(3))
    rise_kernel = torch.zeros(3, 3, 11, 11)  # RISE's gkern: the kernel on the channel diagonal
    for c in range(3):
        rise_kernel[c, c] = torch.from_numpy(k)
    torch.testing.assert_close(blur(image), F.conv2d(image[None], rise_kernel, padding=5)[0])


def test_bad_parameters_raise_clear_errors():
    image, zeros, sal = toy_image(), torch.zeros(3, 4, 4), np.ones((4, 4))
    with pytest.raises(ValueError, match="n_steps=0"):
        perturbation_curve(channel_sum_logits, image, sal, 0, "deletion", zeros, n_steps=0)
    with pytest.raises(ValueError, match="n_steps"):
        perturbation_curve(channel_sum_logits, image, sal, 0, "deletion", zeros, n_steps=2.5)
    with pytest.raises(ValueError, match=r"image must be a \(3, H, W\) tensor, got \(1, 3, 4, 4\)"):
        perturbation_curve(channel_sum_logits, image[None], sal, 0, "deletion", zeros)
    with pytest.raises(ValueError, match=r"saliency has shape \(4, 5\) but the image is \(4, 4\)"):
        perturbation_curve(channel_sum_logits, image, np.ones((4, 5)), 0, "deletion", zeros)
    with pytest.raises(ValueError, match="2-D"):
        perturbation_curve(channel_sum_logits, image, np.ones((1, 4, 4)), 0, "deletion", zeros)
    with pytest.raises(ValueError, match="baseline has shape"):
        perturbation_curve(channel_sum_logits, image, sal, 0, "deletion", torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match="mode='delete'"):
        perturbation_curve(channel_sum_logits, image, sal, 0, "delete", zeros)
    with pytest.raises(ValueError, match="target=2 but the model has 2 classes"):
        perturbation_curve(channel_sum_logits, image, sal, 2, "deletion", zeros)
    with pytest.raises(ValueError, match="batch_size"):
        perturbation_curve(channel_sum_logits, image, sal, 0, "deletion", zeros, batch_size=0)
    with pytest.raises(ValueError, match="baseline='grey'"):
        make_baseline("grey", image, MEAN, STD)


def test_nan_in_the_map_is_named():
    sal = np.ones((4, 4), np.float32)
    sal[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"saliency has 1 NaN value\(s\), the first at \(y=2, x=1\)"):
        perturbation_curve(channel_sum_logits, toy_image(), sal, 0, "deletion", torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        pixel_order(sal)
