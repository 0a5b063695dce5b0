"""A generated task whose best op family is known by construction: does the search choose it?

Input: one channel of +-1 noise. Target: the sign of the input ``SHIFT`` = 6 voxels further along
the last axis. Only the full-resolution cells see single voxels, and of them only the last
decoder-normal cell reads the stem's exact signal, so the target must be reached inside that
cell type: a chain of its edges must span 6 voxels (the stem spans one). Dilated separable
convs span 2, 3 or 4 voxels per edge, a 3x3x3 conv or pooling one, identity none; a cell's
longest chain has 4 edges, so without a dilated op no path gets there. On ``dec_normal`` the
search must therefore put the dilated family {r2, r3, r4} first; the other cell types are free.

The search is the package's own: ``SearchNetwork`` with Algorithm 1, ``BilevelStep`` with the
recipe's two Adams, the recipe's alpha learning-rate rule for this budget, the tau schedule,
weights on 4/5 of the cases and alpha on the other 1/5. ``cut_alpha_gradient`` and
``swap_splits`` break it on purpose, to show what the check can detect (docs/BENCHMARKS.md).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from ..bilevel import BilevelStep
from ..genotypes import CELL_TYPES, derive
from ..operations import OPS
from ..recipe import SEARCH, tau_schedule
from ..search_model import SearchNetwork

SHIFT = 5
SMOOTH_RADIUS = 3  # the smoothing kernel's half-width (sigma 1 voxel)
PLANTED_CELL = "dec_normal"
PLANTED_FAMILY = ("sep_dil_conv_3x3x3_r2", "sep_dil_conv_3x3x3_r3", "sep_dil_conv_3x3x3_r4")


def make_cases(n: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` cases of ``size``^3: input [n, 1, s, s, s], Gaussian noise smoothed with sigma = 1 voxel
    (so the stem's 3x3x3 conv sees a voxel's value, whatever its random weights) and scaled to unit
    variance; target [n, s, s, s], the input's sign ``SHIFT`` voxels on along the last axis."""
    gen = torch.Generator().manual_seed(seed)
    r = 2 * SMOOTH_RADIUS
    field = torch.randn(n, 1, size + r, size + r, size + r + SHIFT, generator=gen)
    offsets = torch.arange(-SMOOTH_RADIUS, SMOOTH_RADIUS + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets ** 2 / 2)
    for axis in range(3):
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = len(kernel)
        field = F.conv3d(field, kernel.view(shape))
    field = field / field.std()
    return field[..., :size].contiguous(), (field[:, 0, ..., SHIFT:] > 0).long().contiguous()


def family_ranking(alphas: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Per cell type the ops by their mean softmax(alpha) over the 14 edges, strongest first."""
    out = {}
    for t in CELL_TYPES:
        mean = torch.softmax(alphas[t].detach().float(), -1).mean(0)
        out[t] = [OPS[k] for k in mean.argsort(descending=True).tolist()]
    return out


def planted_family_first(alphas: dict[str, torch.Tensor]) -> bool:
    """Whether the strongest op on ``dec_normal`` (mean softmax(alpha) over its 14 edges) is a
    dilated separable conv."""
    return family_ranking(alphas)[PLANTED_CELL][0] in PLANTED_FAMILY


def run_search(seed: int, iterations: int = 200, warmup: int = 100, stem: int = 8, size: int = 24, batch: int = 1,
               cases: int = 20, cut_alpha_gradient: bool = False, swap_splits: bool = False,
               data_seed: int | None = None,
               verbose: bool = False, log=print) -> dict:
    """One search on the planted task; returns its alphas, ranking, and whether the family won.
    ``seed`` seeds the network, the draws and the batches; the cases come from ``data_seed``
    (default: ``seed``)."""
    torch.manual_seed(seed)
    x, y = make_cases(cases, size, seed if data_seed is None else data_seed)
    n_arch = max(1, round(cases * SEARCH.arch_fraction))
    weight_idx, arch_idx = torch.arange(n_arch, cases), torch.arange(n_arch)
    if swap_splits:
        weight_idx, arch_idx = arch_idx, weight_idx
    net = SearchNetwork(1, 2, stem_channels=stem, deep_supervision=False)
    net.apply(net.initialize)
    net.generator = torch.Generator().manual_seed(seed)
    alpha_steps = iterations - warmup
    optimizer = torch.optim.Adam(
        [{"params": net.weight_parameters(), "lr": SEARCH.weight_lr, "betas": SEARCH.weight_betas},
         {"params": net.arch_parameters(), "lr": SEARCH.arch_lr_for(alpha_steps), "betas": SEARCH.arch_betas}])

    def loss(logits, target):
        return F.cross_entropy(logits, target)

    forward = net
    if cut_alpha_gradient:  # the draw still depends on alpha, its weights carry no gradient to it
        sample = net.sample

        def forward(data):
            net.fixed_weights = {t: w.detach() for t, w in sample().items()}
            try:
                return net(data)
            finally:
                net.fixed_weights = None

    step = BilevelStep(net, forward, loss, optimizer, clip_norm=SEARCH.grad_clip_norm, log=log)
    pick = torch.Generator().manual_seed(seed + 1)

    def batch_of(idx):
        chosen = idx[torch.randint(0, len(idx), (batch,), generator=pick)]
        return x[chosen], y[chosen]

    start = time.time()
    losses = []
    for it in range(iterations):
        net.tau.fill_(tau_schedule(it, iterations, warmup, SEARCH.tau_start, SEARCH.tau_end))
        if it >= warmup:
            step.arch_step(*batch_of(arch_idx))
        losses.append(step.weight_step(*batch_of(weight_idx)))
        if verbose and (it + 1) % 20 == 0:
            r = family_ranking(net.alphas)[PLANTED_CELL][:3]
            log(f"it {it + 1}: weight loss {sum(losses[-20:]) / 20:.4f}, {PLANTED_CELL} top {r}")
    alphas = {t: a.detach().clone() for t, a in net.alphas.items()}
    ranking = family_ranking(alphas)
    return {"seed": seed, "alphas": alphas, "ranking": ranking, "planted_first": planted_family_first(alphas),
            "seconds": time.time() - start, "alpha_steps": alpha_steps}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=200, help="bi-level iterations, warm-up included")
    p.add_argument("--warmup", type=int, default=100, help="weight-only iterations before alpha steps")
    p.add_argument("--cut-alpha-gradient", action="store_true")
    p.add_argument("--swap-splits", action="store_true")
    p.add_argument("--stem", type=int, default=8)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--data-seed", type=int, help="the same cases for every seed (default: each seed its own)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    wins, genotypes = 0, []
    for seed in a.seeds:
        r = run_search(seed, a.iterations, a.warmup, stem=a.stem, batch=a.batch, cut_alpha_gradient=a.cut_alpha_gradient,
                       swap_splits=a.swap_splits, verbose=a.verbose, data_seed=a.data_seed)
        genotypes.append(derive(r["alphas"]))
        wins += r["planted_first"]
        mean = torch.softmax(r["alphas"][PLANTED_CELL], -1).mean(0)
        print(f"seed {seed}: {PLANTED_CELL} ranking " + ", ".join(
            f"{op} {mean[OPS.index(op)]:.3f}" for op in r["ranking"][PLANTED_CELL][:4])
            + f"; planted family first: {r['planted_first']} ({r['seconds']:.0f} s)")
    print(f"planted family first on {wins} of {len(a.seeds)} seeds")
    pairs = [g.agreement(h) for k, g in enumerate(genotypes) for h in genotypes[k + 1:]]
    if pairs:
        print("derived genotypes agree on " + ", ".join(
            f"{t} {sum(p[t] for p in pairs) / len(pairs):.2f}" for t in CELL_TYPES)
              + f" of the edges (mean over {len(pairs)} pairs; independent draws: {1 / len(OPS):.3f})")


if __name__ == "__main__":
    main()
