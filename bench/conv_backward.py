"""Backward of the dense dilated 3x3x3 conv of CPU training: oneDNN's against the swapped weight
gradient of ``cpu_training`` (issue 13; docs/BENCHMARKS.md, section 7).

For every node shape of the given stems (hippocampus patch, batch 2, channels-last; stride 1 at
each level, stride 2 into the next) and dilations 1-4, the input and weight gradient of
``F.conv3d`` against those of ``cpu_training._DilatedConv3x3x3`` (forced at every dilation, to
show why it runs at 2 and 3 only), median of --reps, the two alternating.

    python bench/conv_backward.py                # stems 8, 16, 24: about 2 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from nnunet_scnas.cpu_training import SWAPPED_WEIGHT_GRADIENT_DILATIONS, _DilatedConv3x3x3  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stems", type=int, nargs="+", default=[8, 16, 24])
    p.add_argument("--patch", default="40,56,40")
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args()
    patch = [int(v) for v in a.patch.split(",")]
    shapes = []  # (channels, spatial, stride)
    for stem in a.stems:
        for level in range(4):
            size = tuple(s // 2 ** level for s in patch)
            shapes.append((stem * 2 ** level // 4, size, 1))
            if level < 3:
                shapes.append((stem * 2 ** (level + 1) // 4, size, 2))
    print(f"threads {torch.get_num_threads()}, batch 2, channels-last, median of {a.reps}; "
          f"backward ms, oneDNN / swapped (CPU training swaps at dilations {SWAPPED_WEIGHT_GRADIENT_DILATIONS})")
    for c, size, s in shapes:
        cells = []
        for d in (1, 2, 3, 4):
            x = torch.randn(2, c, *size).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
            w = torch.randn(c, c, 3, 3, 3).contiguous(memory_format=torch.channels_last_3d).requires_grad_()
            outs = (F.conv3d(x, w, None, s, d, d), _DilatedConv3x3x3.apply(x, w, s, d))
            g = torch.randn_like(outs[0])
            times = ([], [])
            for _ in range(a.reps + 1):  # the first round warms up
                for y, ts in zip(outs, times):
                    t0 = time.perf_counter()
                    torch.autograd.grad(y, (x, w), g, retain_graph=True)
                    ts.append(time.perf_counter() - t0)
            one, swapped = (statistics.median(ts[1:]) * 1e3 for ts in times)
            cells.append(f"d{d} {one:6.2f} / {swapped:6.2f}")
        print(f"{c:3d} ch {'x'.join(map(str, size)):>8s} stride {s}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
