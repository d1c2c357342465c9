"""BatchNorm folding: same logits and saliency maps (to float32 rounding), the user's module
untouched, only unambiguous conv -> BatchNorm pairs folded, fold off = today's maps."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import run_cli
from wsol_bench.frames import resize_shorter_side
from wsol_bench.models import ModelSpec, build_classifier, wrap_module
from wsol_bench.models.batchnorm import (
    FoldedNormAct,
    find_conv_bn_pairs,
    fold_batchnorm,
)
from wsol_bench.saliency import CropSettings, image_saliency
from wsol_bench.saliency.gradient import Gradient

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def randomise_batchnorms(module: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms (fresh ones are the identity map)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return module


def snapshot(module: nn.Module) -> tuple[list, dict, list, bool]:
    return ([(n, type(m)) for n, m in module.named_modules()],
            {k: v.clone() for k, v in module.state_dict().items()},
            [p.requires_grad for p in module.parameters()], module.training)


def assert_unchanged(module: nn.Module, before: tuple[list, dict, list, bool]) -> None:
    types, state, grads, training = snapshot(module)
    assert types == before[0]
    assert state.keys() == before[1].keys() and all(torch.equal(state[k], before[1][k]) for k in state)
    assert grads == before[2] and training == before[3]


def photos() -> list[np.ndarray]:
    skimage_data = pytest.importorskip("skimage.data")
    return [resize_shorter_side(skimage_data.coffee(), 256), resize_shorter_side(skimage_data.chelsea(), 256)]


def assert_maps_match(a, b) -> None:
    """Maps equal to float32 rounding. Measured on EfficientNet-Lite0 (these photos, 2 crops,
    top-3): the folded maps differ from the unfolded ones by at most 6% of the map's maximum
    on a handful of pixels (ReLU6 units exactly at 0 or 6 flip), on < 0.03% of pixels by more
    than 1% of it; a float64 run of the *unfolded* model differs from its own float32 run
    by as much (up to 1.8% of the maximum, and on 12% of pixels by > 0.1% with random weights)."""
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.classes, y.classes)
        np.testing.assert_allclose(x.logits, y.logits, rtol=0, atol=1e-4 * np.abs(x.logits).max())
        top = x.maps.max(axis=(1, 2), keepdims=True)
        rel = np.abs(x.maps - y.maps) / top
        assert rel.max() < 0.1, rel.max()
        assert (rel > 1e-2).mean() < 1e-3, (rel > 1e-2).mean()
        assert np.median(rel) < 1e-4, np.median(rel)


@pytest.mark.parametrize("weights", ["random", None])
def test_efficientnet_lite0_maps_equal_unfolded(weights):
    clf = build_classifier(ModelSpec(weights=weights, device="cpu"))
    if weights == "random":
        randomise_batchnorms(clf.module)
    before = snapshot(clf.module)
    folded = fold_batchnorm(clf)
    assert_unchanged(clf.module, before)  # the user's model is never changed
    assert folded.transforms == ("fold_batchnorm",) and folded.identity["transforms"] == ["fold_batchnorm"]
    assert folded.module is not clf.module and not folded.module.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.module.modules())  # all 49 folded
    assert isinstance(folded.module.get_submodule("bn2"), FoldedNormAct)  # target layer: after its ReLU6
    assert set(dict(clf.module.named_modules())) <= set(dict(folded.module.named_modules()))
    settings = CropSettings(crops=2, top_k=3)
    images = photos()
    assert_maps_match(image_saliency(Gradient(), clf, images, settings),
                      image_saliency(Gradient(), folded, images, settings))


def test_target_layer_still_gives_the_activated_feature_maps():
    clf = build_classifier(ModelSpec(weights="random", device="cpu"))
    randomise_batchnorms(clf.module)
    folded = fold_batchnorm(clf)
    outputs = []
    for c in (clf, folded):
        _, layer = c.feature_module()
        handle = layer.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().clone()))
        with torch.no_grad():
            c.logits(torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
        handle.remove()
    assert outputs[0].shape == outputs[1].shape == (1, 1280, 7, 7)
    assert outputs[1].min() >= 0 and outputs[1].max() <= 6  # after ReLU6
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=1e-3)  # float32 rounding, values up to 6


def test_torchvision_resnet18_folds():
    torchvision = pytest.importorskip("torchvision")
    module = randomise_batchnorms(torchvision.models.resnet18(weights=None).eval())
    clf = wrap_module(module, name="resnet18")
    before = snapshot(module)
    folded = fold_batchnorm(clf)
    assert_unchanged(module, before)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.module.modules())  # 20, downsample ones too
    assert isinstance(folded.module.get_submodule("layer4.1.bn2"), nn.Identity)
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(folded.logits(x), clf.logits(x), rtol=0, atol=1e-4)


class Ambiguous(nn.Module):
    """Conv -> BN pairs that must not be folded, and one that must."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_reused, self.bn_reused = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)  # output read twice
        self.conv_inplace, self.bn_inplace = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)  # modified in place first
        self.conv_shared_bn, self.bn_shared = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)  # BN called twice
        self.conv_ok, self.bn_ok = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_reused(x)
        x = self.bn_reused(y) + y
        y = self.conv_inplace(x)
        y.mul_(2)
        x = self.bn_inplace(y)
        x = self.bn_shared(self.conv_shared_bn(x)) + self.bn_shared(x)
        x = torch.relu(self.bn_ok(self.conv_ok(x)))
        return self.head(x.mean(dim=(2, 3)))


def test_only_unambiguous_pairs_fold():
    module = randomise_batchnorms(Ambiguous().eval())
    example = torch.randn(2, 3, 16, 16)
    assert find_conv_bn_pairs(module, example) == [("conv_ok", "bn_ok")]
    clf = wrap_module(module, name="ambiguous")
    folded = fold_batchnorm(clf, input_size=16)
    kinds = {n: type(m) for n, m in folded.module.named_modules()}
    assert kinds["bn_ok"] is nn.Identity
    assert all(kinds[n] is nn.BatchNorm2d for n in ("bn_reused", "bn_inplace", "bn_shared"))
    with torch.no_grad():
        torch.testing.assert_close(folded.logits(example.sigmoid()), clf.logits(example.sigmoid()))


class ReadsBehindTheGraph(nn.Module):
    """A conv output read outside the autograd graph: folding changes the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.head = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.head((self.bn(y) + y.detach()).mean(dim=(2, 3)))


def test_a_fold_that_changes_the_logits_falls_back_with_a_warning():
    clf = wrap_module(randomise_batchnorms(ReadsBehindTheGraph().eval()), name="odd")
    with pytest.warns(UserWarning, match="differ from the original's"):
        out = fold_batchnorm(clf, input_size=16)
    assert out is clf and out.transforms == ()


def test_nothing_to_fold_returns_the_classifier():
    clf = wrap_module(nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)))
    assert fold_batchnorm(clf, input_size=16) is clf


def test_fold_setting_is_read_and_checked():
    from hydra.errors import ConfigCompositionException

    from tests.helpers import compose_cfg
    from wsol_bench.tasks.factory import localisation_plan

    assert localisation_plan(compose_cfg()).engine.fold_batchnorm is True
    assert localisation_plan(compose_cfg("engine.fold_batchnorm=false")).engine.fold_batchnorm is False
    with pytest.raises(ConfigCompositionException, match="engine.fold_batchnorm=maybe"):
        compose_cfg("engine.fold_batchnorm=maybe")


def test_plan_loads_the_classifier_the_saliency_cache_is_keyed_on():
    """Tools that read a run's cached maps (bench/explore_segmentation.py) load the classifier
    through the plan, so a folded run's maps are found under the folded model's identity."""
    from tests.helpers import compose_cfg
    from wsol_bench.tasks.factory import localisation_plan

    folded = localisation_plan(compose_cfg("model.weights=random", "engine.pointwise_matmul=false",
                                           "model.device=cpu")).saliency_classifier()
    unfolded = compose_cfg("model.weights=random", "engine.fold_batchnorm=false", "engine.pointwise_matmul=false")
    plain = localisation_plan(unfolded).saliency_classifier()
    assert folded.identity["transforms"] == ["fold_batchnorm"] and not plain.identity.get("transforms")
    both = localisation_plan(compose_cfg("model.weights=random", "model.device=cpu")).saliency_classifier()
    assert both.identity["transforms"] == ["fold_batchnorm", "pointwise_matmul"]


@pytest.mark.slow
def test_fold_off_gives_todays_maps_bit_for_bit(tmp_path):
    """A run with engine.fold_batchnorm=false caches exactly the unfolded model's maps;
    the default (folded) run caches under another key (``transforms`` in the namespace)."""
    from PIL import Image

    from tests.helpers import write_xml
    from wsol_bench.data.images import read_rgb

    images, ann = tmp_path / "images", tmp_path / "ann"
    images.mkdir()
    ann.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)).save(images / "one.png")
    write_xml(ann, "one", [("n01440764", 5, 5, 40, 30)], w=60, h=40)
    common = [f"dataset.images={images}", f"dataset.annotations={ann}", "engine.loader_workers=0",
              "tta.resize=64", "tta.crop=56", "run.progress=false", "run.figures=0",
              "model.weights=random", "run.processes=1", "engine.pointwise_matmul=false"]  # folding alone
    env = {"OMP_NUM_THREADS": "1"}
    for fold in ("false", "true"):
        res = run_cli(*common, f"engine.fold_batchnorm={fold}", f"engine.cache_dir={tmp_path / fold}",
                      f"hydra.run.dir={tmp_path / ('run_' + fold)}", env=env)
        assert res.returncode == 0, res.stdout[-3000:]
        manifest = json.loads((tmp_path / f"run_{fold}" / "records" / "manifest.json").read_text())
        assert manifest["model"]["fold_batchnorm"] == (fold == "true")
        namespace = json.loads((tmp_path / f"run_{fold}" / "records" / "saliency_namespace.json").read_text())
        assert namespace["model"]["transforms"] == ([] if fold == "false" else ["fold_batchnorm"])
    entries = {fold: list((tmp_path / fold).rglob("*.npz")) for fold in ("false", "true")}
    assert len(entries["false"]) == len(entries["true"]) == 1
    assert entries["false"][0].name != entries["true"][0].name  # folding is in the cache key
    clf = build_classifier(ModelSpec(weights="random", device="cpu"))
    image = resize_shorter_side(read_rgb(images / "one.png"), 64)
    [expected] = image_saliency(Gradient(), clf, [image], CropSettings(resize=64, crop=56), extra_classes=[[0]])
    with np.load(entries["false"][0]) as stored:
        np.testing.assert_array_equal(stored["maps"], expected.maps)  # bit for bit
        np.testing.assert_array_equal(stored["classes"], expected.classes)
    with np.load(entries["true"][0]) as stored:
        assert_maps_match([expected], [replace(expected, maps=stored["maps"], logits=stored["logits"])])
