"""Exact CPU inference kernels for the ops whose PyTorch CPU kernels are slow per FLOP.

On the CPU, 3x3x3 max pooling costs about 5x, 3x3x3 average pooling and a dilated depthwise
3x3x3 conv about 2x the time of a dense 3x3x3 conv at the same width, and a cell's narrow dense
convs run 7-9x below oneDNN's speed (docs/BENCHMARKS.md, section 2): a derived network
predicted 3x slower than stock nnU-Net at equal FLOPs. The same results, with fast kernels:

- pooling is separable: a 3x3x3 max (sum) is a max (sum) of 3 along each axis in turn, done
  with in-place elementwise ops on shifted views; ``count_include_pad=False`` averages divide
  by the product of the per-axis window counts;
- a depthwise conv of dilation d is an undilated depthwise conv on the space-to-batch view
  (the d^3 sub-grids of voxels d apart become batch entries), which oneDNN runs fast in
  channels_last_3d;
- dense convs go to oneDNN directly: PyTorch's choice between oneDNN and its native kernel
  tests N*C*D*H > 20480 (a 2D rule that ignores W), so at batch 1 a 3D conv with few channels,
  such as a node's at the finest level, took the native kernel.

Used for inference on the CPU (no autograd graph): in training the views and copies would be
stored for backward, and CUDA's kernels have no such gap. The exception, average pooling, has
a backward of its own that stores nothing (``cpu_training.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils import flop_counter

if torch.ops.aten.mkldnn_convolution not in flop_counter.flop_registry:
    # so that FlopCounterMode on CPU tensors still counts the convs routed to oneDNN below
    @flop_counter.register_flop_formula(torch.ops.aten.mkldnn_convolution)
    def _mkldnn_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
        return flop_counter.conv_flop_count(x_shape, w_shape, out_shape)


def use_cpu_inference_kernels(x: torch.Tensor, *params: torch.Tensor) -> bool:
    """True if ``x`` is on the CPU and no gradient will be taken through this op."""
    if x.device.type != "cpu":
        return False
    return not torch.is_grad_enabled() or not (x.requires_grad or any(p.requires_grad for p in params))


def _window3(x: torch.Tensor, dim: int, stride: int, reduce: str) -> torch.Tensor:
    """Max or sum of each voxel and its two neighbours along ``dim`` (missing neighbours skipped)."""
    out = x.clone(memory_format=torch.preserve_format)
    n = x.shape[dim]
    if n > 1:
        op = torch.maximum if reduce == "max" else torch.add
        right = out.narrow(dim, 1, n - 1)
        op(right, x.narrow(dim, 0, n - 1), out=right)
        left = out.narrow(dim, 0, n - 1)
        op(left, x.narrow(dim, 1, n - 1), out=left)
    if stride == 2:
        out = out[(slice(None),) * dim + (slice(None, None, 2),)]
    return out


def _window_counts(n: int, stride: int, like: torch.Tensor) -> torch.Tensor:
    counts = torch.full((n,), 3.0, dtype=like.dtype, device=like.device)
    counts[0] -= 1
    counts[-1] -= 1
    return counts.clamp_min(1)[::stride]


def max_pool3x3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.max_pool3d(x, 3, stride, padding=1)``, bit for bit."""
    for dim in (2, 3, 4):
        x = _window3(x, dim, stride, "max")
    return x


def window_divisor(size, stride: int, like: torch.Tensor) -> torch.Tensor:
    """The voxels inside each output's 3x3x3 window over an input of spatial ``size``."""
    d, h, w = (_window_counts(n, stride, like) for n in size)
    return d[:, None, None] * h[None, :, None] * w[None, None, :]


def avg_pool3x3x3(x: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.avg_pool3d(x, 3, stride, padding=1, count_include_pad=False)`` up to float rounding."""
    size = x.shape[2:]
    for dim in (2, 3, 4):
        x = _window3(x, dim, stride, "sum")
    return x.div_(window_divisor(size, stride, x))


def dilated_depthwise_conv3x3x3(x: torch.Tensor, weight: torch.Tensor, dilation: int) -> torch.Tensor:
    """``F.conv3d(x, weight, padding=dilation, dilation=dilation, groups=C)`` at stride 1.

    Voxels ``dilation`` apart form ``dilation**3`` interleaved sub-grids; on each, the dilated
    conv is an undilated one with padding 1. Sizes are zero-padded to a multiple of the
    dilation, which leaves the cropped result unchanged (the padding is zeros either way).
    """
    d = dilation
    n, c, *size = x.shape
    pad = [(-s) % d for s in size]
    if any(pad):
        x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
    sd, sh, sw = ((s + p) // d for s, p in zip(size, pad))
    # one copy into channels_last_3d sub-grids: (n * d^3, c, sd, sh, sw) with channels innermost
    sub = x.reshape(n, c, sd, d, sh, d, sw, d).permute(0, 3, 5, 7, 2, 4, 6, 1)
    sub = sub.reshape(n * d ** 3, sd, sh, sw, c).permute(0, 4, 1, 2, 3)
    y = F.conv3d(sub, weight, padding=1, groups=c)
    y = y.permute(0, 2, 3, 4, 1).reshape(n, d, d, d, sd, sh, sw, c)
    y = y.permute(0, 7, 4, 1, 5, 2, 6, 3).reshape(n, c, sd * d, sh * d, sw * d)
    return y[:, :, :size[0], :size[1], :size[2]] if any(pad) else y


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple, padding: tuple,
           dilation: tuple, groups: int) -> torch.Tensor:
    """``F.conv3d`` with numeric padding, through oneDNN where it runs float32 on this CPU."""
    if x.dtype == weight.dtype == torch.float32 and torch.backends.mkldnn.is_available():
        return torch.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups)
    return F.conv3d(x, weight, bias, stride, padding, dilation, groups)
