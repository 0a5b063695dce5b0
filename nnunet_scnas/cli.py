"""``nnunet_scnas`` command: the demo, the comparison with stock nnU-Net, genotype pictures and cost,
and the demo's dataset generator."""
from __future__ import annotations

import argparse
import os
import sys


def _cmd_show(args: argparse.Namespace) -> None:
    from .genotypes import Genotype
    g = Genotype.load(args.genotype)
    print(g.describe())
    prov = {k: v for k, v in g.provenance.items() if k != "alpha_softmax"}
    if prov:
        print("provenance: " + ", ".join(f"{k}={v}" for k, v in prov.items()))
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
    from .genotypes import Genotype
    from .model import SCNASNetwork
    g = Genotype.load(args.genotype)
    try:
        shape = [int(v) for v in args.input.split(",")]
    except ValueError:
        raise ValueError(f"--input must be C,X,Y,Z integers, got {args.input!r}") from None
    if len(shape) != 4:
        raise ValueError(f"--input must be C,X,Y,Z (4 integers), got {args.input!r}")
    from .macro import check_spatial_size
    check_spatial_size(shape[1:])
    net = SCNASNetwork(shape[0], args.classes, g, stem_channels=args.stem, deep_supervision=False)
    flops = count_flops(net, [1] + shape)
    print(f"stem {args.stem}, input {'x'.join(map(str, shape))}, {args.classes} outputs: "
          f"{count_parameters(net) / 1e6:.2f} M parameters, {flops / 1e9:.2f} GFLOPs "
          f"({flops / 2e9:.2f} G multiply-adds)")


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
    c.add_argument("--stem", type=int, default=68, help="stem channels (paper's retrain: 68)")
    c.add_argument("--input", default="4,128,128,128", help="C,X,Y,Z of one input patch (paper: 4,128,128,128)")
    c.add_argument("--classes", type=int, default=4, help="output channels")
    c.set_defaults(func=_cmd_cost)
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
