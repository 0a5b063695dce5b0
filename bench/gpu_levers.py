"""Where the GPU training step of a derived network goes, and two levers for it (issue 13).

On an H200 the derived network's step (stem 68, 2 x 4 x 128^3, float16) spends about 45 % of its
time in PyTorch's own depthwise-3D kernels (cuDNN is not used for them) and 25 % in InstanceNorm
(docs/BENCHMARKS.md, section 7). This times, forward + backward under float16 autocast:

1. per kernel, at the node widths and sizes of stem 68 (17 channels at 128^3 ... 136 at 16^3):
   the dilated depthwise conv as PyTorch runs it, in channels_last_3d, and as a dense conv whose
   weight is the depthwise one on the diagonal (the same sums plus zero products, on cuDNN's
   tensor-core kernels); InstanceNorm against GroupNorm with one channel per group (the same
   normalisation);
2. the whole training step with each lever patched in, beside stock nnU-Net (32-320 features):
   "shipped" is what ``operations.DilatedDepthwiseConv3d`` does on CUDA.

    python bench/gpu_levers.py            # CUDA only; about 80 s on an H200
"""
from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from train_step import REPO, genotypes, make_step, nnunet_loss, stock_unet, targets  # noqa: E402

from nnunet_scnas.operations import diagonal_weight  # noqa: E402


def cuda_ms(fn, reps: int = 10) -> float:
    fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernels(stem: int, size: int, batch: int) -> None:
    print(f"kernels, forward + backward, float16 autocast, batch {batch}, ms (median of 10)")
    print(f"{'C':>4s} {'size':>5s} {'op':>6s} {'native':>8s} {'CL':>8s} {'diag':>8s}")
    for level in range(4):
        c, s = stem // 4 * 2 ** level, size // 2 ** level
        x = torch.randn(batch, c, s, s, s, device="cuda", requires_grad=True)
        g = torch.randn(batch, c, s, s, s, device="cuda", dtype=torch.half)
        w = torch.randn(c, 1, 3, 3, 3, device="cuda", requires_grad=True)
        xc = x.detach().contiguous(memory_format=torch.channels_last_3d).requires_grad_()
        gc = g.contiguous(memory_format=torch.channels_last_3d)
        for d in (2, 4):
            def run(inp, grad, dense=False):
                def f():
                    with torch.autocast("cuda", torch.float16):
                        y = (F.conv3d(inp, diagonal_weight(w), padding=d, dilation=d) if dense
                             else F.conv3d(inp, w, padding=d, dilation=d, groups=c))
                    y.backward(grad)
                return f
            print(f"{c:4d} {s:5d} {'dw r' + str(d):>6s} {cuda_ms(run(x, g)):8.2f} {cuda_ms(run(xc, gc)):8.2f} "
                  f"{cuda_ms(run(x, g, True)):8.2f}")
        gamma = torch.ones(c, device="cuda", requires_grad=True)
        beta = torch.zeros(c, device="cuda", requires_grad=True)

        def norm(group):
            def f():
                with torch.autocast("cuda", torch.float16):
                    y = (F.group_norm(x, c, gamma, beta, 1e-5) if group
                         else F.instance_norm(x, weight=gamma, bias=beta, eps=1e-5))
                y.backward(g.to(y.dtype))
            return f
        print(f"{c:4d} {s:5d} {'IN/GN':>6s} {cuda_ms(norm(False)):8.2f} {'':>8s} {cuda_ms(norm(True)):8.2f}")


def steps(stem: int, size: int, batch: int, channels: int, classes: int) -> None:
    from nnunet_scnas import SCNASNetwork
    from nnunet_scnas import operations as ops
    plain_norm, plain_dw = ops.InstanceNorm3d.forward, ops.DilatedDepthwiseConv3d.forward

    def group_norm(self, x, scale=None):
        w, b = (self.weight, self.bias) if scale is None else (self.weight * scale, self.bias * scale)
        return F.group_norm(x, x.shape[1], w, b, self.eps)

    def native_dw(self, x):
        return torch.nn.Conv3d.forward(self, x)

    def diag_dw(self, x):
        return F.conv3d(x, diagonal_weight(self.weight), None, self.stride, self.padding, self.dilation)

    levers = {"PyTorch depthwise": (plain_norm, native_dw),
              f"shipped (dense <= {ops.DENSE_DEPTHWISE_MAX_CHANNELS} ch)": (plain_norm, plain_dw),
              "dense at every width": (plain_norm, diag_dw), "GroupNorm + shipped": (group_norm, plain_dw)}
    shape = [batch, channels, size, size, size]
    x = torch.randn(*shape, device="cuda")
    ys = targets(shape, classes, 3, "cuda")
    genotype = genotypes(f"{REPO}/docs/example_genotype.json", ["example"])["example"]
    net = SCNASNetwork(channels, classes, genotype, stem).cuda().train()
    stock = stock_unet(channels, classes, 32, (size,) * 3).cuda().train()
    run_net = make_step(net, torch.optim.Adam(net.parameters(), 3e-3), nnunet_loss(3), x, ys, True)
    run_stock = make_step(stock, torch.optim.SGD(stock.parameters(), 1e-2, momentum=0.99, nesterov=True),
                          nnunet_loss(3), x, ys, True)
    results = {"stock nnU-Net 32-320": []}
    results.update({k: [] for k in levers})
    for _ in range(2):  # alternating rounds
        results["stock nnU-Net 32-320"].append(cuda_ms(run_stock, 5))
        for name, (norm, dw) in levers.items():
            ops.InstanceNorm3d.forward, ops.DilatedDepthwiseConv3d.forward = norm, dw
            results[name].append(cuda_ms(run_net, 5))
    ops.InstanceNorm3d.forward, ops.DilatedDepthwiseConv3d.forward = plain_norm, plain_dw
    stock_ms = min(results["stock nnU-Net 32-320"])
    print(f"\ntraining step, example genotype stem {stem}, {batch} x {channels} x {size}^3, float16, ms (best round)")
    for name, ts in results.items():
        print(f"{name:24s} {min(ts):8.1f}   x stock {min(ts) / stock_ms:5.2f}")


if __name__ == "__main__":
    torch.backends.cudnn.benchmark = True
    kernels(68, 128, 2)
    steps(68, 128, 2, 4, 4)
