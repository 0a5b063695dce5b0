"""What autograd keeps for backward after one training forward pass of the supernet, per mode.

Exact and noise-free, unlike a peak-memory measurement: every tensor saved for backward is
counted once (by storage) and attributed to the operation that produced it (LeakyReLU
outputs, conv outputs read by a norm, pooling indices, ...). Same seeded draws as
``search_step.py``; float32 on the CPU, with the kernels and layout that CUDA runs (not CPU
training's channels-last and folded convs).

    python bench/saved_tensors.py                         # 32^3, stem 8
    python bench/saved_tensors.py --code .bench_prev      # another version of nnunet_scnas
"""
from __future__ import annotations

import argparse
import collections
import os

import torch

from _code import check_code, use_code

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def saved_bytes(net: torch.nn.Module, x: torch.Tensor) -> collections.Counter:
    """Bytes saved for backward by one forward pass, keyed by the producing autograd node."""
    seen: set[int] = set()
    by_producer: collections.Counter = collections.Counter()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            producer = type(t.grad_fn).__name__ if t.grad_fn is not None else f"leaf {t.dtype}"
            by_producer[producer] += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x)
    return by_producer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--stem", type=int, default=8)
    p.add_argument("--code", default=REPO, help="folder to import nnunet_scnas from (to compare two versions)")
    a = p.parse_args()
    use_code(a.code)
    from nnunet_scnas.search_model import SearchNetwork
    check_code(a.code)
    from nnunet_scnas import operations
    if hasattr(operations, "FAST_CPU_TRAINING"):  # off: the kernels CUDA runs, whose memory this projects
        operations.FAST_CPU_TRAINING = False
    torch.set_num_threads(1)
    totals = {}
    print(f"saved for backward, batch 1, 4 channels, {a.size}^3, stem {a.stem}, code {a.code}")
    for mode in ("two_op", "all", "one_op"):
        torch.manual_seed(0)
        net = SearchNetwork(4, 4, a.stem, deep_supervision=True, sampling=mode).train()
        net.generator = torch.Generator().manual_seed(1)
        counts = saved_bytes(net, torch.randn(1, 4, a.size, a.size, a.size))
        totals[mode] = sum(counts.values())
        top = ", ".join(f"{k} {v / 2 ** 20:.1f}" for k, v in counts.most_common(5))
        print(f"{mode:>7} {totals[mode] / 2 ** 20:7.1f} MiB  ({top})")
    print(f"two_op/all memory={totals['two_op'] / totals['all']:.3f}; "
          f"two_op/one_op memory={totals['two_op'] / totals['one_op']:.3f}")


if __name__ == "__main__":
    main()
