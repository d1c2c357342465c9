"""saliency=random: seeded, deterministic in any batch, independent of the model, non-negative,
one forward pass without gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wsol_bench.models import Classifier
from wsol_bench.saliency import CropSettings, attribution_maps, image_saliency, saliency_method
from wsol_bench.saliency.random_map import RandomMap

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def classifier(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6)).eval()
    return Classifier(net, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "toy", f"random:seed{seed}")


def crops(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 3, 16, 20), generator=torch.Generator().manual_seed(seed))


def test_maps_depend_only_on_seed_crop_and_class():
    x = crops()
    targets = torch.tensor([1, 4, 2])
    maps = attribution_maps(RandomMap(), classifier(), x, targets)
    assert maps.shape == (3, 16, 20) and maps.dtype == torch.float32
    assert float(maps.min()) >= 0 and float(maps.max()) < 1
    # uniform: mean 1/2, variance 1/12 (960 values: loose bounds)
    assert abs(float(maps.mean()) - 0.5) < 0.05 and abs(float(maps.var()) - 1 / 12) < 0.015
    # the same crop and class in another batch, at another position, with another model
    alone = attribution_maps(RandomMap(), classifier(seed=7), x[2:3], targets[2:3])
    assert torch.equal(alone[0], maps[2])
    swapped = attribution_maps(RandomMap(), classifier(), x[[2, 0]], targets[[2, 0]])
    assert torch.equal(swapped[0], maps[2]) and torch.equal(swapped[1], maps[0])
    # another class, another seed, another crop: another map
    assert not torch.equal(attribution_maps(RandomMap(), classifier(), x[2:3], torch.tensor([3]))[0], maps[2])
    assert not torch.equal(attribution_maps(RandomMap(seed=1), classifier(), x[2:3], targets[2:3])[0], maps[2])
    other = x[2:3].clone()
    other[0, 0, 0, 0] += 1e-3
    assert not torch.equal(attribution_maps(RandomMap(), classifier(), other, targets[2:3])[0], maps[2])


def test_one_forward_pass_without_gradients_and_zero_maps_where_no_target():
    calls = []
    clf = classifier()
    clf.module.register_forward_hook(lambda *_: calls.append(torch.is_grad_enabled()))
    with torch.no_grad():  # a method needing a backward pass could not run here
        step = RandomMap().forward(clf, crops())
    assert calls == [False] and step.logits.shape == (3, 6)
    maps = step.maps(torch.tensor([[0, -1, 5]]))
    assert maps.shape == (1, 3, 16, 20) and torch.all(maps[0, 1] == 0) and torch.all(maps[0, 0] > 0)
    assert calls == [False]  # the maps need no network


def test_image_saliency_is_the_same_in_any_batch():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 40, 3), dtype=np.uint8) for _ in range(3)]
    settings = CropSettings(resize=32, crop=24, crops=10, top_k=2)
    together = image_saliency(RandomMap(seed=3), classifier(), images, settings)
    alone = image_saliency(RandomMap(seed=3), classifier(), images[1:2], settings)
    np.testing.assert_array_equal(together[1].maps, alone[0].maps)
    np.testing.assert_array_equal(together[1].classes, alone[0].classes)


def test_registered_with_a_checked_seed():
    assert saliency_method("random", seed=2) == RandomMap(seed=2)
    with pytest.raises(ValueError, match=r"saliency\.seed=-1"):
        saliency_method("random", seed=-1)
    assert RandomMap.cost == ("1 per crop", "0") and RandomMap.cacheable
