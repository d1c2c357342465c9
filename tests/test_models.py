"""Classifiers: weights sources, offline ImageNet EfficientNet-Lite0, devices, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from tests.helpers import CATS, ESPRESSO_OR_CUP, centre_crop
from wsol_bench.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODELS,
    Classifier,
    ModelSpec,
    build_classifier,
    feature_layer,
    load_state_dict_file,
    resolve_device,
)
from wsol_bench.models.efficientnet_lite import (
    convert_state_dict,
    create_module,
    default_weights_path,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

REPO = Path(__file__).resolve().parent.parent

# Sorted-WNID (torchvision/timm ImageNet) indices of the classes the test photos show.
def cfg(**kw: object) -> ModelSpec:
    return ModelSpec(device="cpu", **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_efficientnet_lite0_imagenet_weights_offline(no_network: None) -> None:
    from skimage import data

    clf = build_classifier(cfg())
    assert clf.name == "efficientnet_lite0" and not clf.module.training
    assert clf.weights_id == "sha256:579344248a93e230"  # the package file's sha256 prefix (its name says 57934424)
    assert (clf.mean, clf.std) == ((0.5,) * 3, (0.5,) * 3)
    x = torch.cat([centre_crop(data.coffee()), centre_crop(data.chelsea())])
    assert torch.allclose(clf.normalise(x), x * 2 - 1)
    with torch.no_grad():
        logits = clf.module(clf.normalise(x))
    assert logits.shape == (2, 1000)
    top5 = logits.topk(5).indices.tolist()
    assert set(top5[0]) & set(ESPRESSO_OR_CUP), top5[0]
    assert set(top5[1]) & set(CATS), top5[1]
    assert top5[0][0] in ESPRESSO_OR_CUP and top5[1][0] in CATS


def test_efficientnet_conversion_checks_shapes() -> None:
    model = create_module()
    source = torch.load(default_weights_path(), map_location="cpu", weights_only=True)
    keys = [k for k in source if not k.endswith("num_batches_tracked")]
    assert len(keys) == 247 and keys[0] == "_conv_stem.weight"
    converted = convert_state_dict(source, model)
    assert torch.equal(converted["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(converted["classifier.bias"], source["_fc.bias"])
    bad = dict(source)
    bad["_fc.weight"] = torch.zeros(10, 1280)
    with pytest.raises(ValueError, match="_fc.weight"):
        convert_state_dict(bad, model)
    short = {k: v for k, v in source.items() if k != "_fc.bias"}
    with pytest.raises(ValueError, match="246 tensors"):
        convert_state_dict(short, model)


def test_checkpoint_with_model_key_and_prefix(tmp_path: Path) -> None:
    """A training-runner checkpoint ({'model': state dict, ...}) loads, DDP prefix or not."""
    a = build_classifier(cfg(weights="random", seed=3))
    state = {f"module.{k}": v for k, v in a.module.state_dict().items()}
    path = tmp_path / "last.pt"
    torch.save({"model": state, "epoch": 2, "meta": {"classes": ["n0"]}}, path)
    assert set(load_state_dict_file(path)) == set(a.module.state_dict())
    b = build_classifier(cfg(weights=str(path)))
    assert b.weights_id.startswith("sha256:") and len(b.weights_id) == 7 + 16
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.allclose(a.module(x), b.module(x), atol=1e-5)


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet50"])
def test_torchvision_random_weights(name: str) -> None:
    clf = build_classifier(cfg(name=name, weights="random", seed=1))
    assert isinstance(clf, Classifier) and clf.name == name and not clf.module.training
    assert (clf.mean, clf.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert clf.weights_id == "random:seed1"
    with torch.no_grad():
        out = clf.module(clf.normalise(torch.rand(1, 3, 64, 64)))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_random_weights_follow_the_seed() -> None:
    first = build_classifier(cfg(name="resnet50", weights="random", seed=0)).module.conv1.weight
    again = build_classifier(cfg(name="resnet50", weights="random", seed=0)).module.conv1.weight
    other = build_classifier(cfg(name="resnet50", weights="random", seed=1)).module.conv1.weight
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_torchvision_weights_from_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: None) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(FileNotFoundError) as err:
        build_classifier(cfg(name="resnet50"))
    assert str(expected) in str(err.value) and "allow_download" in str(err.value)
    random = build_classifier(cfg(name="resnet50", weights="random", seed=5))
    expected.parent.mkdir(parents=True)
    torch.save(random.module.state_dict(), expected)
    loaded = build_classifier(cfg(name="resnet50"))
    assert loaded.weights_id.startswith("sha256:")
    assert torch.equal(loaded.module.fc.weight, random.module.fc.weight)
    assert loaded.module.fc.weight.requires_grad  # trainable: the training runner reuses build_classifier


@pytest.mark.parametrize("name", ["alexnet", "efficientnet_lite0", "paper_convnet"])
def test_missing_weights_file_names_the_path(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_classifier(cfg(name=name, weights=str(missing)))


def test_paper_convnet() -> None:
    with pytest.raises(FileNotFoundError, match="model.weights"):
        build_classifier(cfg(name="paper_convnet"))
    clf = build_classifier(cfg(name="paper_convnet", weights="random"))
    channels = [m.out_channels for m in clf.module.modules() if isinstance(m, torch.nn.Conv2d)]
    widths = [m.out_features for m in clf.module.modules() if isinstance(m, torch.nn.Linear)]
    assert channels == [64, 256, 256, 256, 256] and widths == [4096, 4096, 1000]
    with torch.no_grad():
        assert clf.module.features(torch.zeros(1, 3, 224, 224)).shape == (1, 256, 6, 6)
        for size in (224, 160, 256):
            assert clf.module(torch.zeros(2, 3, size, size)).shape == (2, 1000)


def test_unknown_model_name() -> None:
    with pytest.raises(ValueError, match="name='lenet': must be one of .*efficientnet_lite0"):
        cfg(name="lenet")


def test_resolve_device(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(RuntimeError, match="GPU 3"):
        resolve_device("cuda:3")


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "model").glob("*.yaml")), ids=lambda p: p.stem)
def test_model_config_files(path: Path) -> None:
    """Each conf/model file fits the schema (ModelSpec's own fields) and names its own model."""
    from wsol_bench.config import ModelSchema

    merged = OmegaConf.merge(OmegaConf.structured(ModelSchema), OmegaConf.load(path))
    assert merged.name == path.stem
    assert merged.name in MODELS.names()


def test_timm_and_torchvision_architectures_and_a_custom_module(tmp_path: Path, no_network: None) -> None:
    import timm

    state = timm.create_model("resnet18", pretrained=False).state_dict()
    torch.save(state, tmp_path / "r18.pth")
    clf = build_classifier(cfg(name="timm", arch="resnet18", weights=str(tmp_path / "r18.pth")))
    assert clf.name == "timm:resnet18" and clf.weights_id.startswith("sha256:")
    assert clf.mean == IMAGENET_MEAN  # from timm's pretrained config
    assert torch.equal(clf.module.fc.weight, state["fc.weight"])
    assert clf.feature_module()[0] == "layer4"
    with pytest.raises(FileNotFoundError, match="allow_download"):  # nothing in the (empty) HF cache
        build_classifier(cfg(name="timm", arch="resnet18"))
    tv = build_classifier(cfg(name="torchvision", arch="resnet18", weights="random"))
    assert tv.name == "torchvision:resnet18" and tv.target_layer == "layer4"
    with pytest.raises(ValueError, match="not a torchvision classification model"):
        build_classifier(cfg(name="torchvision", arch="resnet9000", weights="random"))
    own = build_classifier(cfg(name="custom", factory="tests.test_models:tiny_net", num_classes=7))
    assert own.name == "custom:tests.test_models:tiny_net" and own.weights_id.startswith("state:")
    assert own.feature_module()[0] == "0"  # the conv + ReLU block, last with spatial output
    with torch.no_grad():
        assert own.logits(torch.rand(2, 3, 32, 32)).shape == (2, 7)


class PickledObject:
    """An arbitrary Python object: weights_only loading must refuse to unpickle it."""


def tiny_net(num_classes: int = 1000) -> torch.nn.Module:
    """A user's own network, for model=custom."""
    return torch.nn.Sequential(
        torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, num_classes))


def test_unsafe_or_broken_weight_files_are_refused_with_the_file_name(tmp_path: Path) -> None:
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": PickledObject(), "w": torch.zeros(1)}, unsafe)
    with pytest.raises(ValueError) as err:
        build_classifier(cfg(weights=str(unsafe)))
    assert str(unsafe) in str(err.value) and "for safety" in str(err.value)
    assert "weights_only=False" not in str(err.value)
    good = tmp_path / "good.pth"
    torch.save(build_classifier(cfg(weights="random")).module.state_dict(), good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ValueError, match=f"{truncated} is truncated or not a torch weights file"):
        build_classifier(cfg(weights=str(truncated)))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match=f"{wrong}"):
        build_classifier(cfg(name="resnet50", weights=str(wrong)))


@pytest.mark.parametrize("name, tensors", [("efficientnet_lite1", 322), ("efficientnet_lite2", 322)])
def test_efficientnet_lite1_and_lite2_load_offline(name: str, tensors: int, no_network: None) -> None:
    source = torch.load(default_weights_path(name), map_location="cpu", weights_only=True)
    assert len([k for k in source if not k.endswith("num_batches_tracked")]) == tensors
    clf = build_classifier(cfg(name=name))
    assert clf.weights_id.startswith("sha256:") and clf.target_layer == "bn2"
    assert feature_layer(clf.module) == "bn2"
