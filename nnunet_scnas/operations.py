"""The candidate operation set O of SCNAS (paper, Sec. 3), one small module per op.

Every op maps ``C`` channels to ``C`` channels (the cell's node width). ``stride=2`` gives the
form used on the input edges of reduction cells; expansion cells up-sample their inputs
before the ops run ("pre-upsampling", see ``cells.py``), so they use the ``stride=1`` form.
Conv ops are pre-activation, LeakyReLU -> Conv -> InstanceNorm, as the paper states.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .cpu_inference import (avg_pool3x3x3, conv3d, dilated_depthwise_conv3x3x3, max_pool3x3x3,
                            use_cpu_inference_kernels)
from .cpu_training import avg_pool3x3x3_train, conv3x3x3_train

#: The eight candidate ops, in the order of the columns of every alpha table.
OPS: tuple[str, ...] = (
    "conv_3x3x3",
    "sep_dil_conv_3x3x3_r2",
    "sep_dil_conv_3x3x3_r3",
    "sep_dil_conv_3x3x3_r4",
    "max_pool_3x3x3",
    "avg_pool_3x3x3",
    "identity",
    "zero",
)
ZERO_INDEX: int = OPS.index("zero")
NEGATIVE_SLOPE = 1e-2  # nnU-Net's LeakyReLU slope


class _LeakyReLUSavingOutput(torch.autograd.Function):
    """LeakyReLU whose backward reads the sign from the output, as an in-place LeakyReLU does
    (exact: the slope is positive). Autograd then need not keep the input alive: a cell's
    concatenated output, a decoder sum or a node only read by conv ops is freed after use."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(x, NEGATIVE_SLOPE)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        y, = ctx.saved_tensors
        return torch.ops.aten.leaky_relu_backward(grad, y, NEGATIVE_SLOPE, True)


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """nnU-Net's LeakyReLU (slope 1e-2); in training, autograd stores its output only."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _LeakyReLUSavingOutput.apply(x)
    return F.leaky_relu(x, NEGATIVE_SLOPE)


class LeakyReLU(nn.LeakyReLU):
    """``nn.LeakyReLU(1e-2)`` through ``leaky_relu``."""

    def __init__(self):
        super().__init__(NEGATIVE_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return leaky_relu(x)


#: CPU training runs channels-last with GroupNorm kernels (below and ``CellUNet._training_layout``;
#: docs/BENCHMARKS.md section 7). False gives the layout and kernels every other device runs: the
#: tests compare both, and measure CUDA's saved tensors on the CPU that way.
FAST_CPU_TRAINING = True


def cpu_training(x: torch.Tensor) -> bool:
    """True on the CPU in grad mode, unless ``FAST_CPU_TRAINING`` is off."""
    return FAST_CPU_TRAINING and x.device.type == "cpu" and torch.is_grad_enabled()


class InstanceNorm3d(nn.InstanceNorm3d):
    """nnU-Net's affine InstanceNorm. In CPU training it runs as GroupNorm with one channel per
    group, the same normalisation, whose CPU kernel is about twice as fast forward and backward
    in the default layout (and slower than InstanceNorm's in channels-last: hence the copy in),
    and hands on channels-last, the layout of CPU training. ``scale`` multiplies the affine
    (``PreActivatedOp.after_activation``)."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-5, affine=True)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = (self.weight, self.bias) if scale is None else (self.weight * scale, self.bias * scale)
        if cpu_training(x):
            y = F.group_norm(x.contiguous(), x.shape[1], weight, bias, self.eps)
            return y.contiguous(memory_format=torch.channels_last_3d)
        return F.instance_norm(x, weight=weight, bias=bias, eps=self.eps)


class PreActivatedOp(nn.Sequential):
    """LeakyReLU -> convs -> InstanceNorm. Called alone it is the full op. Inside a cell
    ``after_activation`` is called instead, for two savings of stored activations
    (docs/BENCHMARKS.md): several ops read the same node, so the cell activates it once; and an
    edge weight ``scale`` is folded into the norm's affine (scale * IN(x) = IN with scale * gamma,
    scale * beta), so autograd keeps no extra copy of the op output for the weighted sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after_activation(self[0](x))

    def after_activation(self, x_activated: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        *convs, norm = list(self)[1:]
        for module in convs:
            x_activated = module(x_activated)
        return norm(x_activated, scale)


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` (zero padding) whose CPU inference runs through oneDNN (``cpu_inference.conv3d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_cpu_inference_kernels(x, self.weight):
            return conv3d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        return super().forward(x)


class ConvOp(PreActivatedOp):
    """LeakyReLU -> Conv(3x3x3) -> InstanceNorm."""

    def __init__(self, channels: int, stride: int):
        super().__init__(
            LeakyReLU(),
            Conv3d(channels, channels, 3, stride, padding=1, bias=False),
            InstanceNorm3d(channels),
        )


#: on CUDA, depthwise convs up to this many channels run as dense convs (``diagonal_weight``):
#: measured faster at 17 and 34 channels, slower at 68 (H200, float16; docs/BENCHMARKS.md, section 7)
DENSE_DEPTHWISE_MAX_CHANNELS = 40
#: the same in CPU training (channels-last, forward + backward, 2 cores; docs/BENCHMARKS.md, section 7):
#: at stride 1 faster up to 16 channels (0.65-0.92x the time), slower from 24; at stride 2, where
#: PyTorch's channels-last depthwise backward is slowest, 0.27-0.48x up to 32 channels, 0.88x at 64
DENSE_DEPTHWISE_MAX_CHANNELS_CPU = {1: 16, 2: 64}


def diagonal_weight(weight: torch.Tensor) -> torch.Tensor:
    """A (C, 1, k, k, k) depthwise weight as the (C, C, k, k, k) dense weight that has it on the
    diagonal: the dense conv computes the same sums plus products with zeros. PyTorch runs 3D
    depthwise convs on CUDA with its own kernels, not cuDNN's; for narrow nodes cuDNN's dense
    kernels are faster despite the C-fold FLOPs (docs/BENCHMARKS.md, section 7). In float32
    they use TF32 where PyTorch lets cuDNN do so (its default), as every other conv does."""
    eye = torch.eye(weight.shape[0], device=weight.device, dtype=weight.dtype)
    return weight.transpose(0, 1) * eye[:, :, None, None, None]


class DilatedDepthwiseConv3d(Conv3d):
    """Depthwise dilated 3x3x3 conv (padding = dilation, no bias); fast kernel for CPU inference,
    a dense conv with a diagonal weight for narrow nodes on CUDA (in CPU training, where narrow
    nodes run dense too, ``SepDilConvOp`` folds its pointwise conv into that dense conv)."""

    def __init__(self, channels: int, stride: int, dilation: int):
        super().__init__(channels, channels, 3, stride, padding=dilation, dilation=dilation,
                         groups=channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1 and use_cpu_inference_kernels(x, self.weight):
            return dilated_depthwise_conv3x3x3(x, self.weight, self.dilation[0])
        if self._runs_dense(x):
            return F.conv3d(x, diagonal_weight(self.weight), None, self.stride, self.padding, self.dilation)
        return super().forward(x)

    def _runs_dense(self, x: torch.Tensor) -> bool:
        if x.is_cuda:
            return self.in_channels <= DENSE_DEPTHWISE_MAX_CHANNELS
        return cpu_training(x) and self.in_channels <= DENSE_DEPTHWISE_MAX_CHANNELS_CPU.get(self.stride[0], 0)


class SepDilConvOp(PreActivatedOp):
    """LeakyReLU -> depthwise dilated Conv(3x3x3) -> pointwise Conv(1x1x1) -> InstanceNorm."""

    def __init__(self, channels: int, stride: int, dilation: int):
        super().__init__(
            LeakyReLU(),
            DilatedDepthwiseConv3d(channels, stride, dilation),
            Conv3d(channels, channels, 1, bias=False),
            InstanceNorm3d(channels),
        )

    #: derived networks set it (``cells.DerivedCell``); the supernet keeps the two convs, whose
    #: rounding the search's documented runs used (docs/BENCHMARKS.md, section 7)
    fold_pointwise: bool = False

    def after_activation(self, x_activated: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """In CPU training, where a narrow depthwise conv runs as a dense one anyway, the pointwise
        conv of a derived network is folded into it: one dense conv with weight
        ``pointwise[o, i] * depthwise[i]``, the same sums in another order, one conv call and one
        pass over the node fewer; at dilation 2 and 3 its weight gradient is a swapped forward conv
        (``cpu_training.conv3x3x3_train``; docs/BENCHMARKS.md, section 7)."""
        _, depthwise, pointwise, norm = self
        if not (self.fold_pointwise and cpu_training(x_activated) and depthwise._runs_dense(x_activated)):
            return super().after_activation(x_activated, scale)
        weight = (pointwise.weight * depthwise.weight.transpose(0, 1)).contiguous(memory_format=torch.channels_last_3d)
        return norm(conv3x3x3_train(x_activated, weight, depthwise.stride[0], depthwise.dilation[0]), scale)


class Identity(nn.Module):
    """Skip connection. At stride 2 it keeps every second voxel per axis: parameter-free,
    like identity itself, so the search does not see a hidden conv behind this name."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, ::2, ::2, ::2]


class _MaxPoolRecomputeIndices(torch.autograd.Function):
    """3x3x3 max pooling that keeps only its input for backward (already alive as the node)
    and recomputes the argmax there, instead of storing int64 indices: 2x (4x under float16)
    the output's size per pooling op in the search step, for one extra pooling pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, stride: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.stride = stride
        return F.max_pool3d(x, 3, stride, padding=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, = ctx.saved_tensors
        with torch.enable_grad():
            leaf = x.detach().requires_grad_()
            out = F.max_pool3d(leaf, 3, ctx.stride, padding=1)
        return torch.autograd.grad(out, leaf, grad)[0], None


class MaxPool(nn.Module):
    """max_pool_3x3x3, padding 1. On CUDA, where memory limits the search, training passes
    recompute the indices in backward; on the CPU that doubled the pooling time (the CPU's
    bottleneck) for memory a CPU has, so it keeps them. CPU inference uses the separable kernel."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and torch.is_grad_enabled() and x.requires_grad:
            return _MaxPoolRecomputeIndices.apply(x, self.stride)
        if use_cpu_inference_kernels(x):
            return max_pool3x3x3(x, self.stride)
        return F.max_pool3d(x, 3, self.stride, padding=1)


class AvgPool(nn.Module):
    """avg_pool_3x3x3, padding 1, padded voxels not counted; separable kernels on the CPU, for
    inference and (``cpu_training``) training."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if use_cpu_inference_kernels(x):
            return avg_pool3x3x3(x, self.stride)
        if cpu_training(x):
            return avg_pool3x3x3_train(x, self.stride)
        return F.avg_pool3d(x, 3, self.stride, padding=1, count_include_pad=False)


# op name -> factory(channels, stride). 'zero' has no module: a zero edge contributes nothing
# and is never executed (see ``cells.py``).
OP_FACTORIES: dict[str, Callable[[int, int], nn.Module]] = {
    "conv_3x3x3": lambda c, s: ConvOp(c, s),
    "sep_dil_conv_3x3x3_r2": lambda c, s: SepDilConvOp(c, s, 2),
    "sep_dil_conv_3x3x3_r3": lambda c, s: SepDilConvOp(c, s, 3),
    "sep_dil_conv_3x3x3_r4": lambda c, s: SepDilConvOp(c, s, 4),
    "max_pool_3x3x3": lambda c, s: MaxPool(s),
    "avg_pool_3x3x3": lambda c, s: AvgPool(s),
    "identity": lambda c, s: Identity(s),
}


def make_op(name: str, channels: int, stride: int = 1) -> nn.Module | None:
    """Build op ``name`` at ``channels`` channels; ``None`` for ``zero``."""
    if name not in OPS:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(OPS)}")
    if stride not in (1, 2):
        raise ValueError(f"stride must be 1 or 2, got {stride}")
    return None if name == "zero" else OP_FACTORIES[name](channels, stride)
