"""Image-specific class saliency: crops, pasting, agreement with captum and the naive loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests import reference_saliency
from wsol_bench.boxes import Box
from wsol_bench.frames import map_to_original, resize_shorter_side
from wsol_bench.models import Classifier
from wsol_bench.saliency import (
    CropSettings,
    CropWindow,
    SaliencyResult,
    attribution_maps,
    crop_windows,
    paste_maps,
)
from wsol_bench.saliency import image_saliency as image_saliency_of
from wsol_bench.saliency.crops import crop_tensors
from wsol_bench.saliency.gradient import Gradient
from wsol_bench.saliency.image_saliency import image_tensor

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

MEAN, STD = (0.45, 0.5, 0.55), (0.2, 0.25, 0.3)


def settings(crop: int = 224, crops: int = 10, top_k: int = 5) -> CropSettings:
    return CropSettings(resize=crop, crop=crop, crops=crops, top_k=top_k)


def image_saliency(clf, images, crop=224, crops=10, top_k=5, extra_classes=None) -> list[SaliencyResult]:
    """The paper's gradient under the crop wrapper (the run's default)."""
    return image_saliency_of(Gradient(), clf, images, settings(crop, crops, top_k), extra_classes)


def naive_image_saliency(clf, images, crop=224, crops=10, top_k=5, extra_classes=None) -> list[SaliencyResult]:
    return reference_saliency.naive_image_saliency(Gradient(), clf, images, settings(crop, crops, top_k),
                                                   extra_classes)


def win(y0: int, x0: int, size: int, flip: bool) -> CropWindow:
    return CropWindow(Box(x0, y0, x0 + size - 1, y0 + size - 1), flip)




def small_net(num_classes: int = 12, seed: int = 0) -> nn.Module:
    """A random ConvNet (conv, ReLU, max-pool, global pooling, linear) in eval mode."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, num_classes),
    ).eval()


@pytest.fixture
def small_classifier() -> Classifier:
    return Classifier(module=small_net(), mean=MEAN, std=STD, name="small", weights_id="random:seed0")


def random_images(*shapes: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


# ----------------------------------------------------------------------------- crops


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((300, 451), (256, 385)), ((451, 300), (385, 256)), ((1, 1), (256, 256)), ((3, 7), (256, 597)),
     ((2000, 256), (2000, 256)), ((256, 256), (256, 256))],
)
def test_resize_shorter_side(shape: tuple[int, int], expected: tuple[int, int]) -> None:
    image = np.full((*shape, 3), 77, dtype=np.uint8)
    out = resize_shorter_side(image, 256)
    assert out.shape == (*expected, 3) and out.dtype == np.uint8
    assert (out == 77).all()  # a flat image stays flat under both interpolations


def test_resize_rejects_grey() -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        resize_shorter_side(np.zeros((10, 10), np.uint8), 8)


def test_crop_windows() -> None:
    wins = crop_windows(256, 300, 224, 10)
    corners = [(0, 0), (0, 76), (32, 0), (32, 76), (16, 38)]
    assert [(w.box.ymin, w.box.xmin) for w in wins] == corners * 2
    assert [w.flip for w in wins] == [False] * 5 + [True] * 5 and {w.size for w in wins} == {224}
    assert crop_windows(256, 300, 224, 1) == [win(16, 38, 224, False)]
    assert crop_windows(256, 300, 224, 2) == [win(16, 38, 224, False), win(16, 38, 224, True)]
    assert crop_windows(224, 224, 224, 10)[3] == win(0, 0, 224, False)
    with pytest.raises(ValueError, match="smaller than the 224x224 crop"):
        crop_windows(223, 300, 224, 10)
    with pytest.raises(ValueError, match="1 .* 2 .* or 10"):
        crop_windows(256, 256, 224, 5)


def test_paste_maps_averages_and_flips_back() -> None:
    wins = [win(0, 0, 3, False), win(0, 2, 3, True)]
    maps = np.zeros((2, 3, 3), np.float32)
    maps[0] = 1.0
    maps[1, :, 0] = 4.0  # the reflected crop's left column is the frame's column 2 + 2 = 4
    out = paste_maps(maps, wins, (4, 6))
    expected = np.zeros((4, 6), np.float32)
    expected[:3, :3] = 1.0
    expected[:3, 2] = 0.5  # covered by both, first gives 1, second 0
    expected[:3, 4] = 4.0
    np.testing.assert_array_equal(out, expected)  # row 3, column 5: no crop, 0


def test_map_to_original() -> None:
    m = np.full((256, 384), 0.25, np.float32)
    for size in [(500, 750), (100, 150), (256, 384)]:
        out = map_to_original(m, size)
        assert out.shape == size and out.dtype == np.float32
        np.testing.assert_allclose(out, 0.25, rtol=1e-6)


# ----------------------------------------------------------------------------- gradients


def crop_batch(image: np.ndarray, windows: list[CropWindow]) -> torch.Tensor:
    return torch.stack(crop_tensors(image_tensor(image, torch.device("cpu")), windows))


def test_matches_captum(small_classifier: Classifier) -> None:
    """Every crop's map equals captum's Saliency (abs, max over channels) on that crop, whether
    computed for one class rank or for all class ranks from one forward pass."""
    from captum.attr import Saliency

    image = random_images((40, 48))[0]
    windows = crop_windows(40, 48, 32, 10)
    crops = crop_batch(image, windows)
    classes = torch.tensor([[3, 0, 7]] * 10).T  # (K, N)
    step = Gradient().forward(small_classifier, crops)
    maps = step.maps(classes)
    assert step.logits.shape == (10, 12) and maps.shape == (3, 10, 32, 32)
    saliency = Saliency(small_classifier.logits)
    for k in range(3):
        expected = saliency.attribute(crops.clone().requires_grad_(True), target=classes[k].tolist(), abs=True)
        expected = expected.amax(dim=1).numpy()
        np.testing.assert_allclose(maps[k].numpy(), expected, rtol=1e-5, atol=1e-7 * expected.max())
        one_call = attribution_maps(Gradient(), small_classifier, crops, classes[k]).numpy()
        np.testing.assert_allclose(one_call, expected, rtol=1e-5, atol=1e-7 * expected.max())


class ColourSquares(nn.Module):
    """Toy scores that depend only on image content, wherever it is in the crop:
    ``S_c = sum over pixels of relu(x_c - 0.5)^2`` for colour channel ``c`` of the
    ``[0, 1]`` image ``x`` (the module undoes the normalisation), so
    ``max_channels |dS_c/dx| = 2 relu(x_c - 0.5)``, known in image coordinates."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
        return torch.relu(x - 0.5).square().sum(dim=(2, 3))


@pytest.mark.parametrize("n_crops", [10, 1])
def test_maps_land_where_the_evidence_is(n_crops: int) -> None:
    clf = Classifier(ColourSquares().eval(), MEAN, STD, "squares", "toy")
    image = np.zeros((40, 56, 3), np.uint8)
    image[2:10, 3:13, 0] = 255  # red square near the top-left: some crops miss it, some cut it
    image[25:37, 40:52, 1] = 204  # green square near the bottom-right
    expected = np.zeros((3, 40, 56), np.float32)
    expected[0, 2:10, 3:13] = 2 * (1.0 - 0.5)
    expected[1, 25:37, 40:52] = 2 * (0.8 - 0.5)  # blue: nothing, map 0
    windows = crop_windows(40, 56, 32, n_crops)
    crops = crop_batch(image, windows)
    for c in range(3):
        maps = attribution_maps(Gradient(), clf, crops, torch.full((len(windows),), c)).numpy()
        for i, w in enumerate(windows):
            m = maps[i][:, ::-1] if w.flip else maps[i]  # back into image orientation
            region = expected[c, w.box.ymin : w.box.ymax + 1, w.box.xmin : w.box.xmax + 1]
            np.testing.assert_allclose(m, region, atol=1e-5, err_msg=str(w))
    [res] = image_saliency(clf, [image], crop=32, crops=n_crops, top_k=1, extra_classes=[[0, 1, 2]])
    assert sorted(res.classes.tolist()) == [0, 1, 2]
    pasted = res.maps[[res.classes.tolist().index(c) for c in range(3)]]
    if n_crops == 10:  # the 10 crops cover the frame: the average is the analytic map everywhere
        np.testing.assert_allclose(pasted, expected, atol=1e-5)
    else:  # centre crop rows 4..35, columns 12..43; 0 outside
        covered = np.zeros((40, 56), bool)
        covered[4:36, 12:44] = True
        np.testing.assert_allclose(pasted, np.where(covered, expected, 0), atol=1e-5)
    scores = [np.mean([float(((x[w.box.ymin : w.box.ymax + 1, w.box.xmin : w.box.xmax + 1] - 0.5).clip(0) ** 2).sum())
                       for w in windows]) for x in (expected[0] / 2 + 0.5, expected[1] / 2 + 0.5)]
    np.testing.assert_allclose(res.logits[:2], scores, rtol=1e-4)


@pytest.mark.parametrize("n_crops", [10, 1])
def test_batched_equals_naive(small_classifier: Classifier, n_crops: int) -> None:
    """Different sizes and aspect ratios in one batch; extra classes, one already in the top-k."""
    images = random_images((40, 52), (48, 40), (40, 40))
    extra = [[5], [], [7, 5, 7]]
    fast = image_saliency(small_classifier, images, crop=32, crops=n_crops, top_k=3, extra_classes=extra)
    slow = naive_image_saliency(small_classifier, images, crop=32, crops=n_crops, top_k=3, extra_classes=extra)
    for im, a, b, ex in zip(images, fast, slow, extra):
        top3 = list(np.argsort(-a.logits)[:3])
        assert a.classes.tolist() == top3 + [c for c in dict.fromkeys(ex) if c not in top3]
        np.testing.assert_array_equal(a.classes, b.classes)
        assert a.classes.dtype == np.int64 and a.logits.dtype == np.float32 and a.maps.dtype == np.float32
        assert a.logits.shape == (12,) and a.maps.shape == (len(a.classes), *im.shape[:2])
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.maps, b.maps, rtol=1e-4, atol=1e-6 * b.maps.max())
        assert (a.maps >= 0).all() and a.maps.max() > 0


def test_leaves_parameters_alone_and_ignores_no_grad(small_classifier: Classifier) -> None:
    images = random_images((36, 40))
    with torch.no_grad():
        [res] = image_saliency(small_classifier, images, crop=32, crops=1, top_k=2)
    assert res.maps.max() > 0
    assert all(p.grad is None for p in small_classifier.module.parameters())


def test_input_checks(small_classifier: Classifier) -> None:
    assert image_saliency(small_classifier, []) == []
    with pytest.raises(ValueError, match="smaller than"):
        image_saliency(small_classifier, random_images((30, 40)), crop=32)
    with pytest.raises(ValueError, match="extra_classes"):
        image_saliency(small_classifier, random_images((32, 32)), crop=32, extra_classes=[[1], [2]])
    with pytest.raises(ValueError, match="extra class 12"):
        image_saliency(small_classifier, random_images((32, 32)), crop=32, extra_classes=[[12]])
    with pytest.raises(ValueError, match="top_k"):
        image_saliency_of(Gradient(), small_classifier, random_images((32, 32)), CropSettings(32, 32, 1, top_k=13))
    training = Classifier(small_net().train(), MEAN, STD, "small", "x")
    with pytest.warns(UserWarning, match="training mode"):
        image_saliency(training, random_images((32, 32)), crop=32, crops=1, top_k=1)


def test_saliency_figure(tmp_path: Path, small_classifier: Classifier) -> None:
    import matplotlib.image

    from wsol_bench.figures.saliency import save_saliency_figure

    image = random_images((40, 52))[0]
    [res] = image_saliency(small_classifier, [image], crop=32, top_k=3)
    names = [f"class {i}" for i in range(12)]
    out = save_saliency_figure(tmp_path / "fig" / "a.png", image, res, names)
    assert matplotlib.image.imread(out).shape[2] in (3, 4)
    save_saliency_figure(tmp_path / "b.png", image, res, ["x", "y", "z"])  # one name per map
    with pytest.raises(ValueError, match="one per map"):
        save_saliency_figure(tmp_path / "c.png", image, res, ["x"])


@pytest.mark.slow
def test_efficientnet_lite0_saliency_on_photos() -> None:
    """Real weights, top 5 and the ground-truth class appended; agrees with the naive loop.

    (Centre crops only, to keep it short: the 10-crop path is what the toy tests check.)"""
    from skimage import data

    from wsol_bench.models import ModelSpec, build_classifier

    clf = build_classifier(ModelSpec(device="cpu"))
    coffee, cat = (resize_shorter_side(im, 256) for im in (data.coffee(), data.chelsea()))
    tabby = 281
    res = image_saliency(clf, [coffee, cat], crops=1, top_k=5, extra_classes=[[], [tabby]])
    assert {967, 968} & set(res[0].classes.tolist())
    assert res[1].classes[0] in (281, 282, 285) and tabby in res[1].classes.tolist()
    for r, im in zip(res, (coffee, cat)):
        assert r.maps.shape == (len(r.classes), *im.shape[:2]) and np.isfinite(r.maps).all()
        assert (r.maps.reshape(len(r.classes), -1).max(axis=1) > 0).all()
    [slow] = naive_image_saliency(clf, [cat], crops=1, top_k=5, extra_classes=[[tabby]])
    fast = res[1]
    np.testing.assert_array_equal(fast.classes, slow.classes)
    np.testing.assert_allclose(fast.maps, slow.maps, rtol=1e-3, atol=1e-4 * slow.maps.max())
