"""The bi-level step of the search (paper, Sec. 2.2, Eq. (2)-(3)); DARTS keeps it in ``architect.py``.

The search alternates an architecture step, alpha <- Adam(grad_alpha L(arch batch)), and a
weight step, Theta <- Adam(grad_Theta L(weight batch)), each on a fresh Algorithm 1 draw (the
caller seeds the draw). First order, as the paper: alpha's gradient is taken at the current
Theta, with no unrolled weight step. One Adam holds both parameter groups with their own
hyperparameters; a step computes gradients for its group only (``backward(inputs=...)``) and
so moves only that group.

Guards, so that one bad batch never reaches alpha or Theta: a non-finite loss or gradient
skips the step (on every rank alike: gradients are averaged before the check), and an
architecture step that still leaves alpha non-finite is undone, Adam state included. Each
guard logs one line.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch
import torch.distributed as dist
from torch import nn

Loss = Callable[[object, object], torch.Tensor]


def average_gradients(params: Iterable[nn.Parameter], group: dist.ProcessGroup | None = None) -> None:
    """Mean of the gradients over the ranks of ``group``, in one all-reduce. Every rank ran the
    same draw, so the same parameters have gradients everywhere (those of ops not drawn none)."""
    grads = [p.grad for p in params if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, group=group)
    flat /= dist.get_world_size(group)
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))


class BilevelStep:
    """Architecture and weight steps of a supernet with ``arch_parameters()`` and ``weight_parameters()``.

    ``forward`` is what runs the supernet (the trainer's possibly wrapped network), ``loss``
    maps (output, target) to a scalar, ``optimizer`` holds both groups. With ``process_group``
    (or ``distributed=True`` for the default group) gradients are averaged over its ranks
    before the step. ``grad_scaler`` is AMP's; ``amp`` turns on autocast for the forward pass.
    """

    def __init__(self, supernet: nn.Module, forward: Callable[[torch.Tensor], object], loss: Loss,
                 optimizer: torch.optim.Optimizer, *, grad_scaler: torch.amp.GradScaler | None = None,
                 amp: bool = False, distributed: bool = False, process_group: dist.ProcessGroup | None = None,
                 clip_norm: float = 12.0, log: Callable[[str], None] = print):
        self.arch_params: list[nn.Parameter] = list(supernet.arch_parameters())
        self.weight_params: list[nn.Parameter] = list(supernet.weight_parameters())
        self.forward, self.loss, self.optimizer = forward, loss, optimizer
        self.grad_scaler, self.amp, self.clip_norm, self.log = grad_scaler, amp, clip_norm, log
        #: called on a group's parameters after backward; replaceable, e.g. to record gradients
        self.average: Callable[[Sequence[nn.Parameter]], None] | None = None
        if distributed or process_group is not None:
            self.average = lambda params: average_gradients(params, process_group)

    def weight_step(self, data: torch.Tensor, target, where: str = "") -> float:
        """One Adam step of Theta on a weight batch; the loss, NaN if it was not finite."""
        return self._step(data, target, self.weight_params, "weights", where)

    def arch_step(self, data: torch.Tensor, target, where: str = "") -> float:
        """One Adam step of alpha on an architecture batch, undone if it left alpha non-finite
        (alpha and its Adam state are small enough to copy at every step)."""
        saved = [(a.detach().clone(), {k: v.clone() if torch.is_tensor(v) else v
                                       for k, v in self.optimizer.state.get(a, {}).items()})
                 for a in self.arch_params]
        loss = self._step(data, target, self.arch_params, "alpha", where)
        if all(bool(torch.isfinite(a).all()) for a in self.arch_params):
            return loss
        with torch.no_grad():
            for a, (value, state) in zip(self.arch_params, saved):
                a.copy_(value)
                self.optimizer.state[a] = state
        self.log(f"WARNING: the alpha step{where} made alpha non-finite; step undone")
        return float("nan")

    def _step(self, data: torch.Tensor, target, params: list[nn.Parameter], name: str, where: str) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(data.device.type, enabled=self.amp):
            loss = self.loss(self.forward(data), target)
        scaler = self.grad_scaler
        (scaler.scale(loss) if scaler is not None else loss).backward(inputs=params)
        if self.average is not None:
            self.average(params)
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(params, self.clip_norm)))
        if scaler is not None:
            scaler.step(self.optimizer)  # skips non-finite gradients itself, and lowers the scale
            scaler.update()
        elif finite:
            self.optimizer.step()
        value = loss.item()
        if not finite:
            what = f"loss {value}" if not math.isfinite(value) else "gradient"
            self.log(f"WARNING: non-finite {what} in the {name} step{where}; step skipped")
        return value if math.isfinite(value) else float("nan")
