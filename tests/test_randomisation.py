"""Model-parameter randomisation (Adebayo et al. 2018): stages of timm's EfficientNet-Lite0 and
torchvision's ResNet-18, cascading and independent copies, determinism, the original untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wsol_bench.models.randomisation import Stage, randomisation_stages, randomised_copy

LITE0_STAGES = ["classifier", "conv_head+bn2", *[f"blocks.{i}" for i in range(6, -1, -1)], "conv_stem+bn1"]
RESNET18_STAGES = ["fc", *[f"layer{i}.{j}" for i in range(4, 0, -1) for j in (1, 0)], "conv1+bn1"]


def trained_like(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` with every floating parameter and buffer moved off its initial value (a
    re-initialised BatchNorm weight of 1 must differ from the "trained" one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            if t.is_floating_point():
                t.add_(0.1 * torch.rand(t.shape, generator=g) + 0.05)
    return module.eval()


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return trained_like(timm.create_model("tf_efficientnet_lite0", pretrained=False))


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    return trained_like(torchvision.models.resnet18(weights=None), seed=1)


def stage_of(stages: list[Stage]) -> dict[str, int]:
    return {p: k for k, s in enumerate(stages) for p in s.parameters}


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def owner(key: str) -> str:
    return key.rpartition(".")[0]


@pytest.mark.parametrize("name, expected", [("lite0", LITE0_STAGES), ("resnet18", RESNET18_STAGES)])
def test_stages_from_the_logits_down_cover_every_parameter_once(name, expected, request, one_torch_thread):
    module = request.getfixturevalue(name)
    stages = randomisation_stages(module, input_size=64)
    assert [s.name for s in stages] == expected
    names = [p for s in stages for p in s.parameters]
    assert len(names) == len(set(names)) and set(names) == {n for n, _ in module.named_parameters()}


@pytest.mark.parametrize("name", ["lite0", "resnet18"])
def test_cascading_changes_exactly_the_top_stages(name, request, one_torch_thread):
    module = request.getfixturevalue(name)
    stages = randomisation_stages(module, input_size=64)
    before = state(module)
    where = stage_of(stages)
    modules_of = {m: k for k, s in enumerate(stages) for m in s.modules}
    for k in (0, 3, len(stages) - 1):
        copy = randomised_copy(module, stages, "cascading", upto=k, seed=0)
        after = copy.state_dict()
        for key, value in before.items():
            if key.endswith("num_batches_tracked"):
                continue
            if key in where:
                stage = where[key]
            else:  # a buffer (BatchNorm running statistics): the stage of its module
                stage = next(v for m, v in modules_of.items() if key.startswith(m + "."))
            changed = not torch.equal(after[key], value)
            assert changed == (stage <= k), (k, key)
            if key.endswith("running_var") and stage <= k:
                assert torch.equal(after[key], torch.ones_like(value))  # BatchNorm statistics reset
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())  # the original untouched


def test_independent_changes_one_stage_as_in_the_cascade(resnet18, one_torch_thread):
    stages = randomisation_stages(resnet18, input_size=64)
    where = stage_of(stages)
    before = dict(resnet18.named_parameters())
    independent = dict(randomised_copy(resnet18, stages, "independent", upto=4, seed=3).named_parameters())
    cascading = dict(randomised_copy(resnet18, stages, "cascading", upto=6, seed=3).named_parameters())
    for name, value in before.items():
        assert torch.equal(independent[name], value) == (where[name] != 4), name
        if where[name] == 4:  # a stage's new values depend only on the seed and its index
            assert torch.equal(independent[name], cascading[name])


def test_same_seed_same_copy_other_seed_other_copy(lite0, one_torch_thread):
    stages = randomisation_stages(lite0, input_size=64)
    a = randomised_copy(lite0, stages, "cascading", upto=2, seed=7).state_dict()
    b = randomised_copy(lite0, stages, "cascading", upto=2, seed=7).state_dict()
    c = randomised_copy(lite0, stages, "cascading", upto=2, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["classifier.weight"], c["classifier.weight"])
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    copy = randomised_copy(lite0, stages, "cascading", upto=len(stages) - 1, seed=7)
    assert not copy.training and torch.isfinite(copy(x)).all()


def test_stage_discovery_restores_training_mode_and_statistics():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    module(torch.rand(2, 3, 8, 8))  # materialise the lazy layer
    module.train()
    before = state(module)
    stages = randomisation_stages(module, input_size=8)
    assert [s.name for s in stages] == ["4", "0+1"]  # a Sequential root: its children
    assert module.training and all(m.training for m in module.modules())
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())
    assert randomised_copy(module, stages, upto=1).training


class WithRawParameters(nn.Module):
    """A root-level parameter and a module without ``reset_parameters``."""

    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.full((3, 1, 1), 2.0))
        self.scale = Scale()
        self.head = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.scale(x + self.offset).mean(dim=(2, 3)))


class Scale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(1.0, 3.0, 3).view(3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain


def test_parameters_without_reset_are_redrawn_with_their_mean_and_spread():
    module = WithRawParameters()
    stages = randomisation_stages(module, input_size=4)
    assert [(s.name, s.parameters) for s in stages] == [
        ("head", ("head.weight", "head.bias")), ("scale", ("offset", "scale.gain"))]
    copy = randomised_copy(module, stages, "independent", upto=1, seed=0)
    assert not torch.equal(copy.scale.gain, module.scale.gain)
    assert torch.equal(copy.offset, module.offset)  # constant: mean 2, spread 0
    assert torch.equal(copy.head.weight, module.head.weight)


def test_bad_arguments_raise():
    module = WithRawParameters()
    stages = randomisation_stages(module, input_size=4)
    with pytest.raises(ValueError, match="mode='random'"):
        randomised_copy(module, stages, "random")
    with pytest.raises(ValueError, match=r"upto=2: must be an integer in \[0, 1\]"):
        randomised_copy(module, stages, upto=2)
    with pytest.raises(ValueError, match="stages"):
        randomised_copy(module, [], upto=0)
