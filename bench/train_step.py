"""One training step of derived SCNAS networks against stock nnU-Net's PlainConvUNet (issue 13).

A step is forward, nnU-Net's loss (Dice + CE under its deep-supervision wrapper, its weights),
backward and the optimiser step (SCNAS: Adam; stock: nnU-Net's SGD). Both networks get the same
patch and batch; stock nnU-Net's width is chosen so that its FLOPs per patch match the SCNAS
network's (features b, 2b, ... capped at 320, b searched; ``--stock-base`` fixes b instead, e.g.
32 for nnU-Net's own widths). Configurations are timed alternately in one run, so both see the
same machine load; each figure is the median of --reps. On the CPU the SCNAS networks train
channels-last by themselves (``CellUNet._training_layout``); ``--channels-last`` also times every
network with channels-last weights and input, stock nnU-Net included.

    python bench/train_step.py                       # CPU: hippocampus patch 40x56x40, batch 2, stems 8 and 16
    python bench/train_step.py --compile             # also with torch.compile
    python bench/train_step.py --device cuda --amp --patch 128,128,128 --channels 4 --classes 4 --stems 68 --stock-base 32

Genotypes span the op mix: all 3x3x3 conv, all separable dilated, pooling-heavy, the example
genotype (docs/example_genotype.json, or --genotype FILE) and two uniform random ones. The last
lines are a per-op profile (torch.profiler) of the default configuration, on the CPU the time
its conv kernels take (no other kernel can bring the ratio below their share), and
``train_step scnas/stock time=X flops=Y`` for it (the example genotype at the first stem).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time

import torch
from torch import nn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: steps per profile: one step's kernel times vary by 10 % on a shared machine
PROFILED_STEPS = 3


def stock_unet(in_ch: int, classes: int, base: int, patch=(40, 56, 40)) -> nn.Module:
    """nnU-Net's 3d_fullres PlainConvUNet, ``base`` features first (at most 320), 2 convs per stage,
    pooling while the coarsest map keeps >= 4 voxels per axis, at most 5 times, as nnU-Net plans
    an isotropic patch: 4 stages for hippocampus' 40x56x40, 6 for 128^3."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He
    n = 1
    while n < 6 and min(patch) // 2 ** n >= 4:
        n += 1
    net = PlainConvUNet(in_ch, n, [min(base * 2 ** i, 320) for i in range(n)], nn.Conv3d, 3,
                        [[1, 1, 1]] + [[2, 2, 2]] * (n - 1), [2] * n, classes, [2] * (n - 1), True,
                        nn.InstanceNorm3d, {"eps": 1e-5, "affine": True}, None, None,
                        nn.LeakyReLU, {"inplace": True}, deep_supervision=True)
    net.apply(InitWeights_He(1e-2))
    return net


def genotypes(example: str, names: list[str] | None = None) -> dict:
    from nnunet_scnas import CELL_TYPES, Genotype
    sep = ("sep_dil_conv_3x3x3_r2", "sep_dil_conv_3x3x3_r3", "sep_dil_conv_3x3x3_r4")
    pools = ("max_pool_3x3x3", "avg_pool_3x3x3", "identity", "conv_3x3x3")
    found = {
        "all_conv": Genotype({t: ("conv_3x3x3",) * 14 for t in CELL_TYPES}),
        "all_sep_dil": Genotype({t: tuple(sep[k % 3] for k in range(14)) for t in CELL_TYPES}),
        "pooling_heavy": Genotype({t: tuple(pools[k % 4] for k in range(14)) for t in CELL_TYPES}),
        "example": Genotype.load(example),
        "random1": Genotype.random(1),
        "random2": Genotype.random(2),
    }
    return {k: v for k, v in found.items() if names is None or k in names}


def nnunet_loss(num_outputs: int) -> nn.Module:
    """nnU-Net's default loss for label maps: Dice + CE, deep supervision weights 1, 1/2, ... (last 0)."""
    import numpy as np
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    weights = np.array([1 / 2 ** i for i in range(num_outputs)])
    weights[-1] = 0
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def targets(shape, classes: int, n_outputs: int, device) -> list[torch.Tensor]:
    y = torch.randint(0, classes, (shape[0], 1, *shape[2:]), device=device)
    return [y[..., ::2 ** k, ::2 ** k, ::2 ** k].float() for k in range(n_outputs)]


def make_step(net: nn.Module, optimizer, loss_fn, x, ys, amp: bool):
    scaler = torch.amp.GradScaler("cuda") if amp else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, enabled=amp):
            out = net(x)
            loss = loss_fn(out[:len(ys)], ys[:len(out)])
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
            optimizer.step()
        return loss
    return step


def timed(step, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--amp", action="store_true", help="float16 autocast (GPU)")
    p.add_argument("--patch", default="40,56,40")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--stems", type=int, nargs="+", default=[8, 16])
    p.add_argument("--genotype", default=os.path.join(REPO, "docs", "example_genotype.json"))
    p.add_argument("--genotypes", nargs="+", default=None,
                   help="subset of all_conv all_sep_dil pooling_heavy example random1 random2 (default: all)")
    p.add_argument("--stock-base", type=int, default=None,
                   help="stock nnU-Net's first-stage features (default: matched to the example's FLOPs)")
    p.add_argument("--channels-last", action="store_true",
                   help="also time both networks with channels_last_3d weights and input (the CPU does so by itself)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd networks")
    p.add_argument("--no-profile", action="store_true")
    a = p.parse_args()
    from nnunet_scnas import SCNASNetwork
    from nnunet_scnas.tools.cost import count_flops
    torch.manual_seed(0)
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True  # as nnU-Net's training runs
    patch = [int(v) for v in a.patch.split(",")]
    shape = [a.batch, a.channels, *patch]
    x = torch.randn(*shape, device=dev)
    ys = targets(shape, a.classes, 3, dev)
    names = a.genotypes or None
    if names is not None and "example" not in names:
        raise SystemExit("--genotypes must include 'example' (the ratio line compares it with stock nnU-Net)")
    configs = []  # (name, stem, net, flops)
    stock_name = {}  # stem -> name of its stock network
    unit = [1, *shape[1:]]
    for stem in a.stems:
        for gname, g in genotypes(a.genotype, names).items():
            net = SCNASNetwork(a.channels, a.classes, g, stem_channels=stem).to(dev).train()
            net.apply(net.initialize)
            flops = count_flops(SCNASNetwork(a.channels, a.classes, g, stem, deep_supervision=False), unit)
            configs.append((f"scnas {gname}", stem, net, flops))
            if gname == "example":
                bases = [a.stock_base] if a.stock_base else range(2, 33)
                cand = {b: count_flops(_eval(stock_unet(a.channels, a.classes, b, patch)), unit) for b in bases}
                base = min(cand, key=lambda b: abs(cand[b] - flops))
                stock_name[stem] = f"stock base {base}"
                configs.append((stock_name[stem], stem, stock_unet(a.channels, a.classes, base, patch).to(dev).train(),
                                cand[base]))
    if a.channels_last:
        configs += [(n + " CL", s, copy.deepcopy(net).to(memory_format=torch.channels_last_3d), f)
                    for n, s, net, f in configs]
    variants = list(configs)
    if a.compile:
        variants += [(n + " compiled", s, torch.compile(net), f) for n, s, net, f in configs]
    steps = {}
    for name, stem, net, flops in variants:
        params = list(net.parameters())
        opt = (torch.optim.SGD(params, 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
               if name.startswith("stock") else torch.optim.Adam(params, 3e-3, foreach=True))  # as the trainers
        xx = x.contiguous(memory_format=torch.channels_last_3d) if name.endswith(("CL", "CL compiled")) else x
        steps[(name, stem)] = make_step(net, opt, nnunet_loss(3), xx, ys, a.amp)
        t0 = time.perf_counter()
        steps[(name, stem)]()  # warm-up (and compilation)
        print(f"warm-up {name} stem {stem}: {time.perf_counter() - t0:.1f} s", flush=True)
    times = {k: [] for k in steps}
    for _ in range(a.reps):  # alternating: every configuration once per round
        for k, step in steps.items():
            times[k].append(timed(step, dev))
    print(f"device {a.device}, threads {torch.get_num_threads()}, batch {a.batch} x {a.channels} x "
          f"{'x'.join(map(str, patch))}, median of {a.reps}")
    print(f"{'network':32s} {'stem':>4s} {'GFLOPs/patch':>12s} {'s/step':>8s} {'s per GFLOP':>11s}")
    flops_of = {(n, s): f for n, s, _, f in variants}
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"{k[0]:32s} {k[1]:4d} {flops_of[k] / 1e9:12.3f} {med:8.3f} {med / (flops_of[k] / 1e9):11.3f}")
    stem0 = a.stems[0]
    stock_key = next(k for k in times if k[0] == stock_name[stem0] and k[1] == stem0)
    scnas_key = ("scnas example", stem0)
    if not a.no_profile:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
        conv_s = {}
        for key in (scnas_key, stock_key):
            with profile(activities=acts) as prof:
                for _ in range(PROFILED_STEPS):
                    steps[key]()
            print(f"\nprofile of {PROFILED_STEPS} steps (totals): {key[0]}, stem {key[1]}")
            sort = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
            events = prof.key_averages()
            print(events.table(sort_by=sort, row_limit=12))
            conv_s[key] = sum(e.self_cpu_time_total for e in events if "conv" in e.key) / 1e6 / PROFILED_STEPS
        if dev.type == "cpu":
            stock_step = statistics.median(times[stock_key])
            print(f"conv kernels per step (forward + backward, profiled): {scnas_key[0]} {conv_s[scnas_key]:.3f} s, "
                  f"{stock_key[0]} {conv_s[stock_key]:.3f} s; the SCNAS convs alone take "
                  f"{conv_s[scnas_key] / stock_step:.2f}x stock's whole step (with these conv kernels, a floor for the time ratio)")
    for suffix in ("", " CL", " compiled", " CL compiled"):  # like against like, where timed
        pair = ((scnas_key[0] + suffix, stem0), (stock_key[0] + suffix, stem0))
        if suffix and all(k in times for k in pair):
            t = statistics.median(times[pair[0]]) / statistics.median(times[pair[1]])
            print(f"train_step scnas/stock{suffix.replace(' ', '_')} time={t:.2f}")
    t = statistics.median(times[scnas_key]) / statistics.median(times[stock_key])
    f = flops_of[scnas_key] / flops_of[stock_key]
    print(f"train_step scnas/stock time={t:.2f} flops={f:.2f}")


def _eval(net: nn.Module) -> nn.Module:
    net.decoder.deep_supervision = False
    return net.eval()


if __name__ == "__main__":
    sys.exit(main())
