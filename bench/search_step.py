"""One bi-level search step (alpha step + weight step) in the three sampling modes, side by side.

Each (mode, size, stem) runs in its own process, so that peak memory is that mode's alone.
After one warm-up step (kernels loaded, Adam state allocated) the peak is reset; "step peak" is
then the growth over what stays allocated between steps: on the CPU the resident set (VmHWM
after clear_refs), on CUDA torch.cuda.max_memory_allocated. "peak" is the absolute figure.
Time = median wall time of ``--reps`` steps.
Every mode draws from the same seeded generator; ``two_op`` peak is the worst over its draws.

    python bench/search_step.py                       # CPU, sizes 32 48, stems 8 16
    python bench/search_step.py --device cuda --amp --sizes 128 --stems 48 --checkpoint-cells

The last line compares the largest configuration:
``two_op/all memory=X time=Y; two_op/one_op memory=Z time=W``.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

from _code import check_code, use_code

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MODES = ("two_op", "all", "one_op")


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def _reset_cpu_peak() -> int:
    """Return freed heap to the OS and reset the peak resident set (Linux: clear_refs 5), so
    that the peak measured next is the step's own; returns the resident set now."""
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_bytes("VmRSS")


def _worker(a: argparse.Namespace) -> dict:
    from nnunet_scnas.recipe import SEARCH  # this checkout's recipe, also when timing older code
    use_code(a.code)
    import torch
    import torch.nn.functional as F

    from nnunet_scnas.genotypes import Genotype
    from nnunet_scnas.model import SCNASNetwork
    from nnunet_scnas.search_model import SearchNetwork

    torch.manual_seed(0)
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads) if a.device == "cpu" else None
    if a.mode == "retrain":
        net = SCNASNetwork(a.channels, a.classes, Genotype.load(a.genotype), a.stem, deep_supervision=True,
                           checkpoint_cells=a.checkpoint_cells).to(dev).train()
        arch, weights = [], list(net.parameters())
    else:
        net = SearchNetwork(a.channels, a.classes, a.stem, deep_supervision=True, sampling=a.mode,
                            checkpoint_cells=a.checkpoint_cells).to(dev).train()
        net.generator = torch.Generator(device=dev).manual_seed(1)
        arch, weights = net.arch_parameters(), net.weight_parameters()
    opt = torch.optim.Adam([{"params": weights, "lr": SEARCH.weight_lr, "betas": SEARCH.weight_betas},
                            {"params": arch, "lr": SEARCH.arch_lr, "betas": SEARCH.arch_betas}])
    shape = (a.batch, a.channels, a.size, a.size, a.size)
    x = torch.randn(shape, device=dev)
    y = torch.randint(0, a.classes, (a.batch, a.size, a.size, a.size), device=dev)
    targets = [y[:, ::2 ** k, ::2 ** k, ::2 ** k] for k in range(3)]

    def half(params: list) -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=torch.float16 if dev.type == "cuda" else torch.bfloat16, enabled=a.amp):
            outs = net(x)
            loss = sum(F.cross_entropy(o.float(), t) for o, t in zip(outs, targets))
        loss.backward(inputs=params)
        opt.step()

    def step() -> None:
        if arch:
            half(arch)  # architecture step (on the 1/5 split in the trainer)
        half(weights)   # weight step (on the 4/5 split); the only step of a retrain
        if dev.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: kernels loaded, Adam state allocated
    if dev.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _reset_cpu_peak()
    times = []
    for _ in range(a.reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else _status_bytes("VmHWM")
    check_code(a.code)
    return {"mode": a.mode, "size": a.size, "stem": a.stem, "time_s": statistics.median(times),
            "peak_gb": peak / 1024 ** 3, "step_peak_gb": (peak - base) / 1024 ** 3}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 48], help="cubic patch edge (multiple of 8)")
    p.add_argument("--stems", type=int, nargs="+", default=[8, 16])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--channels", type=int, default=4)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="CPU threads per worker")
    p.add_argument("--amp", action="store_true", help="autocast (float16 on CUDA, as nnU-Net trains)")
    p.add_argument("--checkpoint-cells", action="store_true")
    p.add_argument("--genotype", help="instead of the search modes: one training step of this genotype's "
                                      "derived network (mode 'retrain')")
    p.add_argument("--code", default=REPO, help="folder to import nnunet_scnas from (to compare two versions)")
    p.add_argument("--json", help="also write all rows to this file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stem", type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.genotype:
        a.modes = ["retrain"]
    if a.worker:
        print(json.dumps(_worker(a)))
        return
    common = [f"--reps={a.reps}", f"--batch={a.batch}", f"--channels={a.channels}", f"--classes={a.classes}",
              f"--device={a.device}", f"--threads={a.threads}", f"--code={a.code}"] + [f"--genotype={a.genotype}"] * bool(a.genotype) + ["--amp"] * a.amp \
        + ["--checkpoint-cells"] * a.checkpoint_cells
    rows = []
    print(f"bi-level step, batch {a.batch}, {a.channels} channels, device {a.device}, amp {a.amp}, "
          f"checkpoint_cells {a.checkpoint_cells}, median of {a.reps}, code {a.code}", flush=True)
    print(f"{'size':>5} {'stem':>5} {'mode':>7} {'time s':>8} {'step peak GB':>13} {'peak GB':>8}", flush=True)
    for size in a.sizes:
        for stem in a.stems:
            for mode in a.modes:
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"--mode={mode}",
                       f"--size={size}", f"--stem={stem}", *common]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:
                    print(f"{size:>5} {stem:>5} {mode:>7} failed: {res.stderr.strip().splitlines()[-1:]}", flush=True)
                    continue
                row = json.loads(res.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(f"{size:>5} {stem:>5} {mode:>7} {row['time_s']:>8.3f} {row['step_peak_gb']:>13.3f} "
                      f"{row['peak_gb']:>8.3f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    by = {(r["size"], r["stem"], r["mode"]): r for r in rows}
    for size in a.sizes:
        for stem in a.stems:
            if all((size, stem, m) in by for m in MODES):
                t, al, one = (by[(size, stem, m)] for m in MODES)
                print(f"size {size} stem {stem}: two_op/all memory={t['step_peak_gb'] / al['step_peak_gb']:.2f} "
                      f"time={t['time_s'] / al['time_s']:.2f}; two_op/one_op "
                      f"memory={t['step_peak_gb'] / one['step_peak_gb']:.2f} time={t['time_s'] / one['time_s']:.2f}")
    big = (max(a.sizes), max(a.stems))
    if all(big + (m,) in by for m in MODES):
        t, al, one = (by[big + (m,)] for m in MODES)
        print(f"two_op/all memory={t['step_peak_gb'] / al['step_peak_gb']:.2f} time={t['time_s'] / al['time_s']:.2f}; "
              f"two_op/one_op memory={t['step_peak_gb'] / one['step_peak_gb']:.2f} "
              f"time={t['time_s'] / one['time_s']:.2f}")


if __name__ == "__main__":
    main()
