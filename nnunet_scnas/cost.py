"""Inference cost of a network: parameters, and FLOPs by torch.utils.flop_counter."""
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
