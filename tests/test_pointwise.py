"""1 x 1 convolutions as matrix products (wsol_bench.models.pointwise) against nn.Conv2d."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wsol_bench.models.pointwise import PointwiseConv, is_pointwise, pointwise_as_matmul

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_outputs_and_input_gradients_equal_the_convolution(bias, layout):
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, 1, bias=bias)
    x = torch.randn(3, 16, 9, 7).contiguous(memory_format=layout).requires_grad_(True)
    upstream = torch.randn(3, 24, 9, 7)
    expected = conv(x)
    (expected_grad,) = torch.autograd.grad(expected, x, upstream)
    fast = PointwiseConv(conv)
    got = fast(x)
    (got_grad,) = torch.autograd.grad(got, x, upstream)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_grad, expected_grad, rtol=1e-5, atol=1e-6)
    assert got.is_contiguous(memory_format=torch.channels_last) and not list(fast.parameters())


def test_under_bfloat16_autocast_it_runs_in_bfloat16_as_the_convolution_does():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, 1)
    x = torch.randn(3, 16, 9, 7, requires_grad=True)
    upstream = torch.randn(3, 24, 9, 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = conv(x), PointwiseConv(conv)(x)
    assert got.dtype == expected.dtype == torch.bfloat16
    (expected_grad,) = torch.autograd.grad(expected, x, upstream.bfloat16())
    (got_grad,) = torch.autograd.grad(got, x, upstream.bfloat16())
    assert got_grad.dtype == torch.float32
    torch.testing.assert_close(got.float(), expected.float(), rtol=0.02, atol=0.02)
    torch.testing.assert_close(got_grad, expected_grad, rtol=0.02, atol=0.02)
    assert not torch.allclose(got.float(), conv(x), rtol=1e-5, atol=1e-6)  # bfloat16, not float32


def test_only_plain_1x1_convolutions_are_rewritten_in_a_copy():
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1, stride=2),
                        nn.Conv2d(8, 8, 1, groups=2), nn.Sequential(nn.Conv2d(8, 4, 1)))
    assert [is_pointwise(m) for m in net] == [True, False, False, False, False, False]
    copy, count = pointwise_as_matmul(net)
    assert count == 2 and isinstance(copy[0], PointwiseConv) and isinstance(copy[5][0], PointwiseConv)
    assert isinstance(net[0], nn.Conv2d)  # the original is untouched
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(copy(x), net(x), rtol=1e-5, atol=1e-6)


def test_efficientnet_lite0_gradient_maps_equal_with_and_without(one_torch_thread):
    from dataclasses import replace

    from wsol_bench.models import ModelSpec, build_classifier
    from wsol_bench.models.pointwise import with_pointwise_matmul
    from wsol_bench.saliency import attribution_maps, saliency_method

    clf = build_classifier(ModelSpec(weights="random", device="cpu"))
    fast = with_pointwise_matmul(clf)
    assert fast.transforms == ("pointwise_matmul",) and fast.identity != clf.identity
    crops, targets = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)), torch.tensor([3, 9])
    got = attribution_maps(saliency_method("gradient"), fast, crops, targets)
    expected = attribution_maps(saliency_method("gradient"), replace(clf), crops, targets)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.max()))
