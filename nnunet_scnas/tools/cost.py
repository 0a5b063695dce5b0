"""Inference cost of a network (parameters, and FLOPs by torch.utils.flop_counter), and random
genotypes of a given cost: the control a searched genotype is compared with."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one eval-mode forward pass on an input of ``input_shape`` (batch included).

    Counted on the meta device (shapes only): free even for 4 x 128^3 inputs. ``model`` is not
    modified; a meta copy is counted. Convolutions count 2 FLOPs per multiply-add, as
    torch.utils.flop_counter does.
    """
    import copy
    meta = copy.deepcopy(model).to("meta").eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        meta(torch.empty(*input_shape, device="meta"))
    return counter.get_total_flops()


def derived_cost(genotype, stem: int, input_shape: Sequence[int], classes: int) -> tuple[int, int]:
    """(parameters, FLOPs) of the derived network of ``genotype`` on one ``input_shape`` = (C, X, Y, Z)
    patch; built on the meta device, so it is cheap at any size."""
    from ..model import SCNASNetwork
    with torch.device("meta"):
        net = SCNASNetwork(input_shape[0], classes, genotype, stem_channels=stem, deep_supervision=False)
    return count_parameters(net), count_flops(net, [1, *input_shape])


def matched_random_genotype(reference, seed: int, stem: int, input_shape: Sequence[int], classes: int,
                            tolerance: float = 0.1, max_draws: int = 2000):
    """The first of the uniform draws ``Genotype.random(seed), Genotype.random(seed + 1), ...`` whose
    parameters and FLOPs are both within ``tolerance`` of ``reference``'s (same stem, patch and
    classes). Returns (genotype, draws); a ValueError if none of ``max_draws`` draws fits."""
    from ..genotypes import Genotype
    ref_params, ref_flops = derived_cost(reference, stem, input_shape, classes)
    for k in range(max_draws):
        candidate = Genotype.random(seed + k)
        params, flops = derived_cost(candidate, stem, input_shape, classes)
        if abs(params / ref_params - 1) <= tolerance and abs(flops / ref_flops - 1) <= tolerance:
            prov = {**candidate.provenance, "matched_to": dict(reference.provenance).get("trainer", "reference"),
                    "parameters": params, "flops": flops, "reference_parameters": ref_params,
                    "reference_flops": ref_flops, "draws": k + 1}
            return Genotype(candidate.cells, prov), k + 1
    raise ValueError(f"none of {max_draws} random genotypes (seeds {seed}..{seed + max_draws - 1}) is within "
                     f"{tolerance:.0%} of the reference's {ref_params / 1e6:.3f} M parameters and "
                     f"{ref_flops / 1e9:.3f} GFLOPs")
