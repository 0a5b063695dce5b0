"""Separable 3x3x3 average pooling with its backward, for CPU training.

PyTorch's CPU average pooling loops over the 27 taps per voxel, forward and backward: at stem 24
it took 18 % of a training step of the demo's genotype, 6-9x the time (at stride 1) of the
separable kernel of ``cpu_inference`` (3 taps per axis, in-place elementwise ops on shifted
views) with the backward below (docs/BENCHMARKS.md, section 7). The window sum along an axis is
symmetric, so its adjoint is the same sum after re-inserting as zeros the voxels a stride of 2
skipped; the counts divide the gradient first. Nothing is saved for backward.

Max pooling keeps PyTorch's kernel: in channels-last it beat a separable max with the argmax
routed back axis by axis, which was 1.5-4x slower above 6 channels.
"""
from __future__ import annotations

import torch

from .cpu_inference import _window3, avg_pool3x3x3, window_divisor

_DIMS = (2, 3, 4)


def _unstride(grad: torch.Tensor, dim: int, stride: int, size: int) -> torch.Tensor:
    """The gradient on the full axis of ``size`` voxels: zeros where a stride of 2 skipped."""
    if stride == 1:
        return grad
    shape = list(grad.shape)
    shape[dim] = size
    layout = torch.contiguous_format if grad.is_contiguous() else torch.channels_last_3d
    full = torch.empty(shape, dtype=grad.dtype, device=grad.device, memory_format=layout).zero_()
    full[(slice(None),) * dim + (slice(None, None, 2),)] = grad
    return full


class _AvgPool3x3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.stride, ctx.size = stride, x.shape[2:]
        return avg_pool3x3x3(x, stride)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        s = ctx.stride
        g = grad / window_divisor(ctx.size, s, grad)
        for dim, size in zip(reversed(_DIMS), reversed(ctx.size)):
            g = _window3(_unstride(g, dim, s, size), dim, 1, "sum")
        return g, None


def avg_pool3x3x3_train(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.avg_pool3d(x, 3, stride, padding=1, count_include_pad=False)`` with its gradient."""
    return _AvgPool3x3x3.apply(x, stride)
