"""``nnunet_scnas`` command: the demo, the comparison with stock nnU-Net, genotype pictures and cost,
and the demo's dataset generator."""
from __future__ import annotations

import argparse
import os
import sys

from ..recipe import RETRAIN


def _cmd_show(args: argparse.Namespace) -> None:
    from ..genotypes import Genotype
    g = Genotype.load(args.genotype)
    print(g.describe())
    prov = {k: v for k, v in g.provenance.items() if k not in ("alpha_softmax", "confidence", "mean_entropy")}
    if prov:
        print("provenance: " + ", ".join(f"{k}={v}" for k, v in prov.items()))
    note = g.randomness_note()
    if note:
        print(f"WARNING: {note}")
    if args.output is not None:
        from .diagram import render_genotype
        try:
            os.makedirs(args.output, exist_ok=True)
        except OSError as e:
            raise ValueError(f"cannot create the output folder {args.output}: {e.strerror}") from None
        for path in render_genotype(g, args.output):
            print(f"wrote {path}")


def _cmd_cost(args: argparse.Namespace) -> None:
    from .cost import count_flops, count_parameters
    from ..genotypes import Genotype
    from ..model import SCNASNetwork
    g = Genotype.load(args.genotype)
    try:
        shape = [int(v) for v in args.input.split(",")]
    except ValueError:
        raise ValueError(f"--input must be C,X,Y,Z integers, got {args.input!r}") from None
    if len(shape) != 4:
        raise ValueError(f"--input must be C,X,Y,Z (4 integers), got {args.input!r}")
    from ..macro import check_spatial_size
    check_spatial_size(shape[1:])
    net = SCNASNetwork(shape[0], args.classes, g, stem_channels=args.stem, deep_supervision=False)
    flops = count_flops(net, [1] + shape)
    print(f"stem {args.stem}, input {'x'.join(map(str, shape))}, {args.classes} outputs: "
          f"{count_parameters(net) / 1e6:.2f} M parameters, {flops / 1e9:.2f} GFLOPs "
          f"({flops / 2e9:.2f} G multiply-adds)")


def _parse_ints(text: str, name: str, count: int) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be {count} comma-separated integers, got {text!r}") from None
    if len(values) != count:
        raise ValueError(f"{name} must be {count} comma-separated integers, got {text!r}")
    return values


def _cmd_random_genotype(args: argparse.Namespace) -> None:
    from ..genotypes import Genotype
    if args.match is None:
        g = Genotype.random(args.seed)
        print(f"uniform draw, seed {args.seed}")
    else:
        from ..macro import check_spatial_size
        from .cost import matched_random_genotype
        reference = Genotype.load(args.match)
        patch = _parse_ints(args.patch, "--patch", 3)
        check_spatial_size(patch)
        g, draws = matched_random_genotype(reference, args.seed, args.stem, [args.channels, *patch], args.classes,
                                           args.tolerance)
        p = g.provenance
        print(f"draw {draws} (seed {p['random_seed']}) matches {args.match} within {args.tolerance:.0%} at stem "
              f"{args.stem}, patch {'x'.join(map(str, patch))}: {p['parameters'] / 1e6:.3f} M parameters "
              f"(reference {p['reference_parameters'] / 1e6:.3f} M), {p['flops'] / 1e9:.3f} GFLOPs "
              f"(reference {p['reference_flops'] / 1e9:.3f})")
    print(g.describe())
    if args.output:
        g.save(args.output)
        print(f"wrote {args.output}")


def _cmd_agree(args: argparse.Namespace) -> None:
    from itertools import combinations

    from ..genotypes import CELL_TYPES, Genotype
    from ..operations import OPS
    if len(args.genotypes) < 2:
        raise ValueError("give at least two genotype files")
    genotypes = [Genotype.load(p) for p in args.genotypes]
    pairs = [a.agreement(b) for a, b in combinations(genotypes, 2)]
    print(f"edges on which two searches chose the same op, mean over {len(pairs)} pairs "
          f"(independent uniform draws: {1 / len(OPS):.3f}):")
    for t in CELL_TYPES:
        print(f"  {t:11s} {sum(p[t] for p in pairs) / len(pairs):.3f}")
    print(f"  {'all':11s} {sum(sum(p.values()) for p in pairs) / len(pairs) / len(CELL_TYPES):.3f}")


def _cmd_planted(args: argparse.Namespace) -> None:
    from .planted import main as planted_main
    planted_main(["--seeds", *map(str, args.seeds)])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnunet_scnas", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("show", help="print a genotype's four cells and draw them (paper, Fig. 2)")
    s.add_argument("genotype")
    s.add_argument("-o", "--output", help="folder for cell_<type>.png (default: beside the genotype file)")
    s.add_argument("--no-images", action="store_true", help="print only")
    s.set_defaults(func=_cmd_show)
    c = sub.add_parser("cost", help="parameters and FLOPs of the derived network (torch.utils.flop_counter)")
    c.add_argument("genotype")
    c.add_argument("--stem", type=int, default=RETRAIN.stem_channels,
                   help=f"stem channels (default: the paper's retrain, {RETRAIN.stem_channels})")
    c.add_argument("--input", default="4,128,128,128", help="C,X,Y,Z of one input patch (paper: 4,128,128,128)")
    c.add_argument("--classes", type=int, default=4, help="output channels")
    c.set_defaults(func=_cmd_cost)
    r = sub.add_parser("random-genotype", help="a uniform random genotype (the control for a searched one), "
                                               "optionally of the same parameters and FLOPs as another")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--match", metavar="GENOTYPE", help="redraw until parameters and FLOPs are within --tolerance "
                                                       "of this genotype's (at --stem, --patch)")
    r.add_argument("--stem", type=int, default=RETRAIN.stem_channels, help="stem channels for --match")
    r.add_argument("--patch", default="128,128,128", help="X,Y,Z patch for --match (default 128,128,128)")
    r.add_argument("--channels", type=int, default=1, help="input channels for --match")
    r.add_argument("--classes", type=int, default=2, help="output channels for --match")
    r.add_argument("--tolerance", type=float, default=0.1, help="relative tolerance of --match (default 0.1)")
    r.add_argument("-o", "--output", help="write the genotype JSON here")
    r.set_defaults(func=_cmd_random_genotype)
    ag = sub.add_parser("agree", help="how many edges several searches (e.g. other $SCNAS_SEARCH_SEED) agree on")
    ag.add_argument("genotypes", nargs="+")
    ag.set_defaults(func=_cmd_agree)
    pl = sub.add_parser("planted", help="check that the search chooses: searches on a generated task whose best "
                                        "op family is known (dilated separable convs), a few minutes per seed")
    pl.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    pl.set_defaults(func=_cmd_planted)
    from . import compare, demo, synth
    d = sub.add_parser("demo", help="the whole workflow on a generated dataset: plan, search, retrain, "
                                    "stock nnU-Net, prediction of held-back cases, comparison")
    demo.add_arguments(d)
    d.set_defaults(func=demo.run)
    cmp = sub.add_parser("compare", help="Dice per label, parameters, GFLOPs and epoch time of trained "
                                         "trainers side by side (stock nnU-Net vs SCNAS by default)")
    compare.add_arguments(cmp)
    cmp.set_defaults(func=compare.run)
    sy = sub.add_parser("synth", help="write the demo's synthetic multi-modal dataset as an nnU-Net raw dataset")
    synth.add_arguments(sy)
    sy.set_defaults(func=synth.run)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "show":
        args.output = None if args.no_images else (args.output or os.path.dirname(os.path.abspath(args.genotype)))
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, PermissionError) as e:
        sys.exit(f"nnunet_scnas {args.command}: error: {e}")


if __name__ == "__main__":
    main()
