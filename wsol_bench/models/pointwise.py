"""1 x 1 convolutions as matrix products, for saliency on the CPU.

On the CPU, torch runs a 1 x 1 convolution of fewer than 16 images single-threaded through
its slow reference kernel (``slow_conv2d``: about a quarter of EfficientNet-Lite0's saliency
time, docs/benchmarks.md); the same product as a matrix multiplication of the channels-last
activations (``(N H W, C_in) x (C_in, C_out)``) runs in the BLAS. :func:`pointwise_as_matmul`
makes that rewrite in a copy of a module: each plain ``nn.Conv2d`` with a 1 x 1 kernel,
stride 1, no padding, one group, becomes a :class:`PointwiseConv` with the same weights, whose
outputs and input gradients equal the convolution's to float rounding (a different
summation order; tested against ``nn.Conv2d``); under autocast it runs in autocast's dtype,
as the convolution does. Gradients flow to the input only: the
weights are buffers.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from wsol_bench.models import Classifier

CHANNELS_LAST = torch.channels_last


class _PointwiseFunction(torch.autograd.Function):
    """``y = x W^T + b`` over the channels of a channels-last ``(N, C, H, W)`` batch."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        n, c, h, w = x.shape
        rows = x.contiguous(memory_format=CHANNELS_LAST).permute(0, 2, 3, 1).reshape(-1, c)
        out = torch.empty((n, weight.shape[0], h, w), dtype=x.dtype, device=x.device, memory_format=CHANNELS_LAST)
        flat = out.permute(0, 2, 3, 1).view(-1, weight.shape[0])  # out's own storage, written in place
        if bias is not None:
            torch.addmm(bias, rows, weight.t(), out=flat)
        else:
            torch.mm(rows, weight.t(), out=flat)
        ctx.save_for_backward(weight)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (weight,) = ctx.saved_tensors
        n, _, h, w = grad.shape
        rows = grad.contiguous(memory_format=CHANNELS_LAST).permute(0, 2, 3, 1).reshape(-1, weight.shape[0])
        grad_in = torch.empty((n, weight.shape[1], h, w), dtype=grad.dtype, device=grad.device,
                              memory_format=CHANNELS_LAST)
        torch.mm(rows, weight, out=grad_in.permute(0, 2, 3, 1).view(-1, weight.shape[1]))
        return grad_in, None, None


class PointwiseConv(nn.Module):
    """A 1 x 1, stride-1, unpadded, ungrouped convolution as a matrix product (weights frozen)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.register_buffer("weight", conv.weight.detach()[:, :, 0, 0].clone())
        self.register_buffer("bias", None if conv.bias is None else conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias, device = self.weight, self.bias, x.device.type
        if torch.is_autocast_enabled(device):  # run in autocast's dtype, as autocast runs nn.Conv2d
            dtype = torch.get_autocast_dtype(device)
            x, weight, bias = x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype)
        return _PointwiseFunction.apply(x, weight, bias)


def is_pointwise(module: nn.Module) -> bool:
    return (type(module) is nn.Conv2d and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.padding in (0, (0, 0)) and module.groups == 1 and module.dilation == (1, 1))


def pointwise_as_matmul(module: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``module`` with every plain 1 x 1 convolution a :class:`PointwiseConv`, and
    how many were rewritten (``module`` itself is never changed)."""
    rewritten = copy.deepcopy(module)
    count = 0
    for parent in list(rewritten.modules()):
        for name, child in list(parent.named_children()):
            if is_pointwise(child):
                setattr(parent, name, PointwiseConv(child))  # type: ignore[arg-type]
                count += 1
    return rewritten, count


def with_pointwise_matmul(classifier: Classifier) -> Classifier:
    """``classifier`` with its 1 x 1 convolutions as matrix products (a copy; ``transforms``
    gains ``"pointwise_matmul"``, so it has its own saliency-cache entries); unchanged when it
    has none."""
    module, count = pointwise_as_matmul(classifier.module)
    if not count:
        return classifier
    return replace(classifier, module=module, transforms=(*classifier.transforms, "pointwise_matmul"))


__all__ = ["PointwiseConv", "is_pointwise", "pointwise_as_matmul", "with_pointwise_matmul"]
