"""The saliency methods beyond the paper, each against an independent computation.

Small ConvNets (conv, ReLU or ReLU6, global average pooling, linear) built here; captum's
own classes where captum has the method, hand computations for CAM and for guided
backpropagation through ReLU6.
"""

from __future__ import annotations

import copy
import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from wsol_bench.models import Classifier
from wsol_bench.registry import make_params
from wsol_bench.saliency import (
    SALIENCY_METHODS,
    CropSettings,
    attribution_maps,
    image_saliency,
    saliency_method,
)
from wsol_bench.saliency.base import max_abs_over_channels
from wsol_bench.saliency.guided_backprop import guided_activations
from wsol_bench.saliency.integrated_gradients import IntegratedGradients
from wsol_bench.saliency.noise_tunnel import NoiseTunnel, crop_generators, crop_noise

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),  # see conftest.py
              pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU:UserWarning")]  # captum's

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MEAN, STD = (0.45, 0.5, 0.55), (0.2, 0.25, 0.3)
NEW_METHODS = ("gradient_x_input", "smoothgrad", "integrated_gradients", "guided_backprop", "gradcam", "cam")
FAST = {"smoothgrad": {"noise_tunnel": {"n_samples": 4}}, "integrated_gradients": {"n_steps": 6}}  # fewer passes
TARGET_LAYER = "5"  # the last activation of small_net: the feature maps before pooling


def small_net(act: type[nn.Module] = nn.ReLU, num_classes: int = 7, seed: int = 0, gain: float = 1.0) -> nn.Module:
    """conv-act-conv(stride 2)-act-conv-act, global average pooling, linear; eval mode.
    ``gain`` scales the first convolution (large: many units above 6)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), act(), nn.Conv2d(8, 8, 3, stride=2, padding=1), act(),
        nn.Conv2d(8, 16, 3, padding=1), act(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes),
    ).eval()
    with torch.no_grad():
        net[0].weight.mul_(gain)
    return net


def classifier_of(net: nn.Module, name: str = "small") -> Classifier:
    return Classifier(module=net, mean=MEAN, std=STD, name=name, weights_id="random:seed0", target_layer=TARGET_LAYER)


class Normalise(nn.Module):
    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.normalise(x)


def crops_and_targets(n: int = 4, size: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, size, size), generator=g), torch.randint(0, 7, (n,), generator=g)


def method(name: str):
    """The method of ``conf/saliency/<name>.yaml`` (smoothgrad: the gradient in a noise tunnel), fewer passes."""
    return saliency_method("gradient" if name == "smoothgrad" else name, **FAST.get(name, {}))


# ------------------------------------------------------------------ references


def reference_map(name: str, clf: Classifier, crops: torch.Tensor, targets: torch.Tensor,
                  monkeypatch: pytest.MonkeyPatch) -> torch.Tensor:
    """The ``(N, h, w)`` map of ``name`` computed independently (captum or by hand)."""
    import captum.attr as ca

    x = crops.clone()
    size = tuple(crops.shape[2:])
    if name == "gradient_x_input":
        a = ca.InputXGradient(clf.module).attribute(clf.normalise(x).requires_grad_(), target=targets)
        return max_abs_over_channels(a)
    if name == "integrated_gradients":
        a = ca.IntegratedGradients(clf.logits).attribute(x, baselines=0.0, target=targets, n_steps=6)
        return max_abs_over_channels(a)
    if name == "smoothgrad":  # the mean over the same noisy copies of captum's gradient map
        m = method(name)
        noise = crop_noise(crops, crop_generators(crops, m.seed), m.n_samples, m.noise)  # (S, N, 3, h, w)
        return torch.stack([max_abs_over_channels(ca.Saliency(clf.logits).attribute(x + eps, target=targets))
                            for eps in noise]).mean(0)
    if name == "guided_backprop":
        if any(isinstance(m, nn.ReLU6) for m in clf.module.modules()):  # captum rewires nn.ReLU only
            return input_gradient_map(classifier_of(hand_guided(clf.module)), crops, targets)
        model = nn.Sequential(Normalise(clf), clf.module)
        return max_abs_over_channels(ca.GuidedBackprop(model).attribute(x.requires_grad_(), target=targets))
    layer = dict(clf.module.named_modules())[TARGET_LAYER]
    if name == "gradcam":
        cams = ca.LayerGradCam(clf.logits, layer).attribute(x, target=targets, relu_attributions=True)
        return ca.LayerAttribution.interpolate(cams.detach(), size, "bilinear")[:, 0]
    if name == "cam":  # by hand: the class's FC weights on the last feature maps
        with torch.no_grad():
            features = clf.module[:6](clf.normalise(x))  # (N, 16, h', w')
            fc = clf.module[8]
            cams = torch.stack([(fc.weight[t][:, None, None] * f).sum(0) for f, t in zip(features, targets)])
            assert torch.allclose(cams.mean((1, 2)) + fc.bias[targets],
                                  clf.logits(x)[torch.arange(len(x)), targets], atol=1e-5)
        return nn.functional.interpolate(cams.clamp(min=0)[:, None], size=size, mode="bilinear",
                                         align_corners=False)[:, 0]
    raise AssertionError(name)


@pytest.mark.parametrize("name", NEW_METHODS)
def test_map_equals_the_independent_computation(name, monkeypatch):
    clf = classifier_of(small_net())
    crops, targets = crops_and_targets()
    expected = reference_map(name, clf, crops, targets, monkeypatch).float()
    got = attribution_maps(method(name), clf, crops, targets)
    assert got.shape == (4, 24, 24) and got.dtype == torch.float32
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


@pytest.mark.parametrize("name", NEW_METHODS)
def test_class_ranks_from_one_call_equal_per_rank_maps(name, monkeypatch):
    """One forward pass, then the maps of two class ranks (the engine's path: ranks share the
    forward pass) equal the independent per-rank computation; rows without a target get zero maps."""
    clf = classifier_of(small_net(nn.ReLU6))
    crops, first = crops_and_targets(n=5)
    targets = torch.stack([first, torch.tensor([3, -1, 0, 6, -1])])
    step = method(name).forward(clf, crops)
    maps = step.maps(targets)
    torch.testing.assert_close(step.logits, clf.logits(crops).detach(), rtol=1e-5, atol=1e-6)
    assert maps.shape == (2, 5, 24, 24) and maps.dtype == torch.float32
    for k in range(2):
        rows = torch.nonzero(targets[k] >= 0).flatten()
        expected = reference_map(name, clf, crops[rows], targets[k, rows], monkeypatch).float()
        torch.testing.assert_close(maps[k, rows], expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))
    assert not maps[1, [1, 4]].any()


# ------------------------------------------------------------------ guided backprop


class _GuidedReLU6(torch.autograd.Function):
    """A hand-written guided backward: ``max(g, 0) * 1[0 < x < 6]``."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * ((x > 0) & (x < 6)).to(grad.dtype)


class GuidedReLU6(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedReLU6.apply(x)


def hand_guided(net: nn.Sequential) -> nn.Sequential:
    """A copy of ``net`` with its ReLU6 modules replaced by :class:`GuidedReLU6`."""
    hand = copy.deepcopy(net)
    for i, m in enumerate(hand):
        if isinstance(m, nn.ReLU6):
            hand[i] = GuidedReLU6()
    return hand


def input_gradient_map(clf: Classifier, crops: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    x = crops.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(clf.logits(x).gather(1, targets[:, None]).sum(), x)
    return max_abs_over_channels(grad)


def test_guided_backprop_stops_negative_gradients_at_every_relu6():
    net = small_net(nn.ReLU6, gain=8.0)
    clf = classifier_of(net)
    crops, targets = crops_and_targets()
    with torch.no_grad():  # the test is only meaningful if units saturate at 6 and some are cut at 0
        pre = net[0](clf.normalise(crops))
    assert (pre > 6).float().mean() > 0.05 and (pre < 0).float().mean() > 0.05
    expected = input_gradient_map(classifier_of(hand_guided(net)), crops, targets)
    got = attribution_maps(saliency_method("guided_backprop"), clf, crops, targets)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    assert (got - input_gradient_map(clf, crops, targets)).abs().max() > 1e-3 * got.max()  # not the plain gradient


def test_guided_backprop_relu6_below_6_equals_captum_on_relu():
    import captum.attr as ca

    net6 = small_net(nn.ReLU6)
    clf = classifier_of(net6)
    crops, targets = crops_and_targets()
    with torch.no_grad():
        assert net6[:2](clf.normalise(crops)).max() < 6
    net = copy.deepcopy(net6)
    for i, m in enumerate(net):
        if isinstance(m, nn.ReLU6):
            net[i] = nn.ReLU()
    expected = max_abs_over_channels(
        ca.GuidedBackprop(nn.Sequential(Normalise(clf), net)).attribute(crops.clone().requires_grad_(), target=targets))
    torch.testing.assert_close(attribution_maps(saliency_method("guided_backprop"), clf, crops, targets), expected)


def test_guided_backprop_leaves_the_module_and_other_threads_alone():
    net = small_net(nn.ReLU6, gain=8.0)
    clf = classifier_of(net)
    crops, targets = crops_and_targets()
    plain = input_gradient_map(clf, crops, targets)
    attribution_maps(saliency_method("guided_backprop"), clf, crops, targets)
    assert all(not m._forward_hooks and not m._backward_hooks for m in net.modules())
    torch.testing.assert_close(input_gradient_map(clf, crops, targets), plain)
    other: list[torch.Tensor] = []
    with guided_activations(net) as rewired:  # another thread's forward passes are not guided
        thread = threading.Thread(target=lambda: other.append(input_gradient_map(clf, crops, targets)))
        thread.start()
        thread.join()
        assert rewired[0] == 0
    torch.testing.assert_close(other[0], plain)


def test_guided_backprop_refuses_a_model_without_activation_modules():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(3)).eval()
    net(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="nobody.*no nn.ReLU or nn.ReLU6"):
        attribution_maps(saliency_method("guided_backprop"), classifier_of(net, "nobody"), torch.rand(2, 3, 8, 8),
                         torch.tensor([0, 1]))


# ------------------------------------------------------------------ SmoothGrad, IG


def smoothgrad(**params) -> NoiseTunnel:
    return NoiseTunnel(saliency_method("gradient"), **params)


def test_smoothgrad_noise_depends_on_the_crop_not_the_batch():
    clf = classifier_of(small_net())
    crops, targets = crops_and_targets(n=3)
    sg = smoothgrad(n_samples=5, noise=0.2, seed=3)
    together = attribution_maps(sg, clf, crops, targets)
    apart = torch.cat([attribution_maps(sg, clf, crops[[i]], targets[[i]]) for i in (2, 0, 1)])[[1, 2, 0]]
    torch.testing.assert_close(together, apart, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(attribution_maps(sg, clf, crops, targets), together, rtol=0, atol=0)
    other_seed = attribution_maps(smoothgrad(n_samples=5, noise=0.2, seed=4), clf, crops, targets)
    assert (other_seed - together).abs().max() > 1e-3 * together.max()
    no_noise = attribution_maps(smoothgrad(n_samples=2, noise=0.0), clf, crops, targets)
    torch.testing.assert_close(no_noise, attribution_maps(saliency_method("gradient"), clf, crops, targets))


@pytest.mark.parametrize("name", ["gradcam", "guided_backprop"])
def test_noise_tunnel_wraps_any_method(name):
    """The noise tunnel around another method is the mean of that method's maps on the noisy copies."""
    clf = classifier_of(small_net(nn.ReLU6))
    crops, targets = crops_and_targets(n=2)
    inner = saliency_method(name)
    tunnel = NoiseTunnel(inner, n_samples=3, noise=0.1, seed=5)
    noise = crop_noise(crops, crop_generators(crops, 5), 3, 0.1)
    expected = torch.stack([attribution_maps(inner, clf, crops + eps, targets) for eps in noise]).mean(0)
    torch.testing.assert_close(attribution_maps(tunnel, clf, crops, targets), expected, rtol=1e-5, atol=1e-7)


def test_smoothgrad_noise_std_is_noise_times_the_crop_range():
    crops = torch.rand(2, 3, 40, 40) * torch.tensor([0.5, 1.0]).view(2, 1, 1, 1)
    spread = crops.flatten(1).amax(1) - crops.flatten(1).amin(1)
    noise = crop_noise(crops, crop_generators(crops, 0), 50, 0.1)
    torch.testing.assert_close(noise.transpose(0, 1).flatten(1).std(1), 0.1 * spread, rtol=0.02, atol=0)


def test_integrated_gradients_completeness_gap_matches_captum():
    import captum.attr as ca

    clf = classifier_of(small_net())
    crops, targets = crops_and_targets()
    ig = IntegratedGradients(n_steps=16)
    change, gap = ig.completeness(clf, crops, targets)
    with torch.no_grad():
        rows = torch.arange(4)
        expected_change = clf.logits(crops)[rows, targets] - clf.logits(torch.zeros_like(crops))[rows, targets]
    torch.testing.assert_close(change.float(), expected_change, rtol=1e-5, atol=1e-6)
    _, delta = ca.IntegratedGradients(clf.logits).attribute(crops, baselines=0.0, target=targets, n_steps=16,
                                                            return_convergence_delta=True)
    torch.testing.assert_close(gap.float(), delta.float(), rtol=1e-4, atol=1e-6)
    ours = ig.attributions(clf, crops, targets.view(1, -1))[0].sum((1, 2, 3)).double()
    torch.testing.assert_close(ours - change, gap, rtol=1e-3, atol=1e-5)
    assert gap.abs().max() < 0.05 * change.abs().max()  # 16 nodes on a small net: nearly complete


# ------------------------------------------------------------------ CAM


def test_cam_refuses_a_model_without_a_gap_linear_head():
    crops, targets = crops_and_targets(n=2, size=16)
    flat = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 7)).eval()
    clf = Classifier(flat, MEAN, STD, "flat_head", "random:seed0", target_layer="1")
    with pytest.raises(ValueError, match="cam: flat_head has no global-average-pooling \\+ linear head"):
        attribution_maps(saliency_method("cam"), clf, crops, targets)
    torch.manual_seed(0)  # GAP, then a hidden layer: shapes fit, the identity does not
    mlp = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 7)).eval()
    clf = Classifier(mlp, MEAN, STD, "mlp_head", "random:seed0", target_layer="1")
    with pytest.raises(ValueError, match="cam: mlp_head .* logits differ from the spatial mean"):
        attribution_maps(saliency_method("cam"), clf, crops, targets)


def test_cam_and_gradcam_on_efficientnet_lite0(one_torch_thread):
    """The real head passes the check; on a GAP + linear head Grad-CAM is CAM / (h' w')."""
    from wsol_bench.models import ModelSpec, build_classifier

    clf = build_classifier(ModelSpec(weights="random", device="cpu"))
    crops, targets = torch.rand(1, 3, 224, 224), torch.tensor([7])
    cam = attribution_maps(saliency_method("cam"), clf, crops, targets)
    gradcam = attribution_maps(saliency_method("gradcam"), clf, crops, targets)
    assert cam.max() > 0
    torch.testing.assert_close(gradcam, cam / 49, rtol=1e-3, atol=1e-6 * float(cam.max()))


# ------------------------------------------------------------------ through image_saliency


@pytest.mark.parametrize("name", NEW_METHODS)
def test_image_saliency_maps_are_nonnegative_frames_and_deterministic(name):
    clf = classifier_of(small_net(nn.ReLU6))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (64, 80, 3), dtype=np.uint8), rng.integers(0, 256, (70, 64, 3), dtype=np.uint8)]
    settings = CropSettings(resize=64, crop=56, crops=10, top_k=2)
    first = image_saliency(method(name), clf, images, settings)
    second = image_saliency(method(name), clf, images, settings)
    for image, a, b in zip(images, first, second):
        assert a.maps.shape == (2, *image.shape[:2]) and a.maps.dtype == np.float32
        assert (a.maps >= 0).all() and a.maps.max() > 0
        np.testing.assert_array_equal(a.maps, b.maps)
        np.testing.assert_array_equal(a.classes, b.classes)


# ------------------------------------------------------------------ parameters, configs, cache


@pytest.mark.parametrize(("name", "key", "value"), [
    ("integrated_gradients", "n_steps", 0), ("cam", "n_steps", 3), ("gradcam", "layer", "x"),
])
def test_parameter_errors_name_the_key(name, key, value):
    with pytest.raises(ValueError, match=f"saliency\\.{key}={value!r}|saliency\\.{key}: not a parameter"):
        saliency_method(name, **{key: value})
    with pytest.raises(ValueError, match=f"where\\.{key}"):
        make_params(SALIENCY_METHODS.get(name), {key: value}, "where")


@pytest.mark.parametrize(("key", "value"), [("n_samples", 0), ("noise", -0.1), ("seed", -1), ("samples", 3)])
def test_noise_tunnel_parameter_errors_name_the_key(key, value):
    with pytest.raises(ValueError, match=f"saliency\\.noise_tunnel\\.{key}"):
        saliency_method("gradcam", noise_tunnel={key: value})


def test_every_method_is_registered_with_a_name_and_cost():
    for name in set(NEW_METHODS) - {"smoothgrad"}:
        cls = SALIENCY_METHODS.get(name)
        assert cls.name == name and len(cls.cost) == 2


def saliency_configs() -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / "saliency").glob("*.yaml") if p.stem != "custom")


def test_every_method_has_a_config():
    assert set(NEW_METHODS) <= set(saliency_configs())


@pytest.mark.parametrize("config", saliency_configs())
def test_saliency_config_builds_its_method(config):
    """``saliency=<config>`` builds the method its file describes (the noise tunnel around it
    when the file has one); the file's keys are checked against the class in test_config.py."""
    from tests.helpers import compose_cfg
    from wsol_bench.tasks.factory import saliency_from

    built = saliency_from(compose_cfg(f"saliency={config}"))
    own = yaml.safe_load((CONF_DIR / "saliency" / f"{config}.yaml").read_text())
    params = {k: v for k, v in own.items() if k not in ("method", "noise_tunnel")}
    expected = SALIENCY_METHODS.get(own["method"])(**params)
    assert built == (NoiseTunnel(expected, **own["noise_tunnel"]) if "noise_tunnel" in own else expected)


def test_methods_never_share_cache_namespaces():
    from wsol_bench.pipeline.engine import Pipeline
    from wsol_bench.segmentation import BOX_EXTRACTORS

    clf = classifier_of(small_net())
    extractor = BOX_EXTRACTORS.create("graphcut", {}, "segmentation")
    methods = [method(n) for n in ("gradient", *NEW_METHODS)]
    methods += [smoothgrad(seed=1), NoiseTunnel(saliency_method("gradcam")),
                saliency_method("integrated_gradients", n_steps=8)]
    spaces = [Pipeline(clf, m, CropSettings(), extractor).saliency_namespace() for m in methods]
    for a, b in itertools.combinations(spaces, 2):
        assert a != b


def test_bfloat16_precision_is_autocast_and_its_own_cache_namespace():
    """``engine.precision=bfloat16`` runs the saliency call under bfloat16 autocast: maps near
    float32's but not equal (the convolutions ran in bfloat16), logits still float32, and a
    cache namespace of its own; float32's namespace is unchanged by the option."""
    from wsol_bench.data.images import LoadedImage
    from wsol_bench.pipeline.engine import Pipeline
    from wsol_bench.segmentation import BOX_EXTRACTORS

    clf = classifier_of(small_net())
    extractor = BOX_EXTRACTORS.create("threshold", {}, "segmentation")
    image = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    loaded = [LoadedImage(0, "a", (40, 48), image)]
    crops = CropSettings(resize=40, crop=32, crops=2, top_k=2)
    results = {}
    for precision in ("float32", "bfloat16"):
        pipe = Pipeline(clf, saliency_method("gradient"), crops, extractor, precision=precision)
        [results[precision]] = pipe.saliency(loaded, [[]], 7)
        results[precision + "_space"] = pipe.saliency_namespace()
    assert "precision" not in results["float32_space"]
    assert results["bfloat16_space"] == {**results["float32_space"], "precision": "bfloat16"}
    f32, b16 = results["float32"], results["bfloat16"]
    assert b16.logits.dtype == np.float32 and b16.maps.dtype == f32.maps.dtype
    assert not np.array_equal(f32.logits, b16.logits)
    np.testing.assert_allclose(b16.logits, f32.logits, rtol=0.05, atol=0.05)
    [reference] = image_saliency(saliency_method("gradient"), clf, [image], crops)
    np.testing.assert_array_equal(reference.maps, f32.maps)  # float32 is the plain call
