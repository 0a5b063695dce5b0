"""Kernels with a backward of their own for CPU training: separable 3x3x3 average pooling, and the
weight gradient of dilated 3x3x3 convs as one forward conv.

PyTorch's CPU average pooling loops over the 27 taps per voxel, forward and backward: at stem 24
it took 18 % of a training step of the demo's genotype, 6-9x the time (at stride 1) of the
separable kernel of ``cpu_inference`` (3 taps per axis, in-place elementwise ops on shifted
views) with the backward below (docs/BENCHMARKS.md, section 7). The window sum along an axis is
symmetric, so its adjoint is the same sum after re-inserting as zeros the voxels a stride of 2
skipped; the counts divide the gradient first. Nothing is saved for backward.

Max pooling keeps PyTorch's kernel: in channels-last it beat a separable max with the argmax
routed back axis by axis, which was 1.5-4x slower above 6 channels.

oneDNN computes the weight gradient of a dilated conv on the CPU through im2col and a GEMM, 1.5-3x
the time of its undilated one. The same gradient is a forward conv with the roles swapped (batch
as channels, the output gradient as the kernel, the dilation as the stride; its output is the
3x3x3 kernel), which oneDNN runs directly: with the input gradient from its own kernel, the
backward kernels took 0.48-0.98x the time at dilation 2 and 3 over 2-48 channels, the backward
through autograd 0.70-1.12x (``bench/conv_backward.py``; docs/BENCHMARKS.md, section 7). At
dilation 1 and 4 (a stride-4 swapped conv) oneDNN's own backward was faster.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

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


#: dilations whose conv weight gradient CPU training computes as a swapped forward conv
SWAPPED_WEIGHT_GRADIENT_DILATIONS = (2, 3)


class _DilatedConv3x3x3(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, dilation: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.dilation = stride, dilation
        return F.conv3d(x, weight, None, stride, dilation, dilation)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        s, d = ctx.stride, ctx.dilation
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, [s] * 3, [d] * 3, [d] * 3, False,
                                                         [0] * 3, 1, [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            # w_grad[o, i, t] = sum over batch and voxels p of grad[n, o, p] * x[n, i, s * p + d * t - d]
            swapped = F.conv3d(x.transpose(0, 1), grad.transpose(0, 1), None, d, d, s)
            grad_w = swapped[:, :, :3, :3, :3].transpose(0, 1)  # 3 taps exactly while stride <= dilation
        return grad_x, grad_w, None, None


def conv3x3x3_train(x: torch.Tensor, weight: torch.Tensor, stride: int, dilation: int) -> torch.Tensor:
    """``F.conv3d(x, weight, None, stride, dilation, dilation)`` (padding = dilation, dense 3x3x3), its
    weight gradient a swapped forward conv at ``SWAPPED_WEIGHT_GRADIENT_DILATIONS`` (not under CPU
    autocast, whose conv output would not match the saved float32 tensors in backward)."""
    if dilation not in SWAPPED_WEIGHT_GRADIENT_DILATIONS or torch.is_autocast_enabled("cpu"):
        return F.conv3d(x, weight, None, stride, dilation, dilation)
    return _DilatedConv3x3x3.apply(x, weight, stride, dilation)
