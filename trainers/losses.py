"""The paper's loss, Jaccard distance, as a drop-in ``dice_class`` for nnU-Net's compound losses.

nnU-Net's DC_and_CE_loss / DC_and_BCE_loss already handle ignore labels and regions and pass a
``loss_mask``; with ``weight_ce=0`` they reduce to the soft-set loss given as ``dice_class``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.utilities.ddp_allgather import AllGatherGrad


class SoftJaccardLoss(nn.Module):
    """1 - |X ∩ Y| / |X ∪ Y| on soft predictions, averaged over classes (or regions)."""

    def __init__(self, apply_nonlin: Callable | None = None, batch_dice: bool = False, do_bg: bool = True,
                 smooth: float = 1e-5, ddp: bool = False):
        super().__init__()
        self.apply_nonlin, self.batch_dice, self.do_bg, self.smooth, self.ddp = (
            apply_nonlin, batch_dice, do_bg, smooth, ddp)

    def forward(self, x: torch.Tensor, y: torch.Tensor, loss_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.apply_nonlin is not None:
            x = self.apply_nonlin(x)
        tp, fp, fn, _ = get_tp_fp_fn_tn(x, y, tuple(range(2, x.ndim)), loss_mask)  # each (b, c)
        if self.batch_dice:
            if self.ddp:
                tp, fp, fn = (AllGatherGrad.apply(t).sum(0) for t in (tp, fp, fn))
            tp, fp, fn = tp.sum(0), fp.sum(0), fn.sum(0)
        jaccard = (tp + self.smooth) / (tp + fp + fn + self.smooth).clamp_min(1e-8)
        if not self.do_bg:
            jaccard = jaccard[..., 1:]
        return 1 - jaccard.mean()
