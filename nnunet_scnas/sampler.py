"""Algorithm 1 of the paper (Gumbel-softmax two-op sampling) and the two ablation samplers.

All samplers take an ``[E, |O|]`` logit table and return an ``[E, |O|]`` weight table; an op
whose weight is exactly zero is not executed by the search network. Sampling always runs in
float32 with autocast off, so mixed-precision training cannot round the draw.
"""
from __future__ import annotations

import torch

SAMPLING_MODES: tuple[str, ...] = ("two_op", "one_op", "all")
_MAX_REDRAWS = 8


def _check_alpha(alpha: torch.Tensor) -> None:
    if alpha.dim() != 2 or alpha.shape[1] < 2:
        raise ValueError(f"alpha must be an [E, |O|] table with |O| >= 2, got shape {tuple(alpha.shape)}")
    if not torch.isfinite(alpha).all():
        raise FloatingPointError("alpha contains NaN or inf; the architecture step diverged "
                                 "(lower the alpha learning rate or enable gradient clipping)")


def gumbel_noise(shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Standard Gumbel(0, 1) noise in float32, redrawn if a draw is not finite."""
    tiny = torch.finfo(torch.float32).tiny
    for _ in range(_MAX_REDRAWS):
        u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
        g = -torch.log(-torch.log(u.clamp(tiny, 1.0 - 1e-7)))
        if torch.isfinite(g).all():
            return g
    raise FloatingPointError(f"Gumbel noise was not finite in {_MAX_REDRAWS} draws")


def _relaxed_logits(alpha: torch.Tensor, tau: float, generator: torch.Generator | None) -> torch.Tensor:
    _check_alpha(alpha)
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    return (alpha.float() + gumbel_noise(alpha.shape, alpha.device, generator)) / tau


def relaxed_weights(alpha: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """z = softmax((alpha + Gumbel) / tau): the continuous relaxation of Eq. (4)."""
    with torch.autocast(alpha.device.type, enabled=False):
        return torch.softmax(_relaxed_logits(alpha, tau, generator), dim=-1)


def draw_pairs(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per row of ``z`` an unordered pair of distinct columns with P({a, b}) = (z_a + z_b) / (|O| - 1).

    Drawn exactly as a ~ z, then b uniform over the other |O| - 1 columns:
    P({a, b}) = z_a / (|O| - 1) + z_b / (|O| - 1). Returns an ``[E, 2]`` index tensor.
    """
    n_edges, n_ops = z.shape
    first = torch.multinomial(z, 1, generator=generator)
    offset = torch.randint(0, n_ops - 1, (n_edges, 1), generator=generator, device=z.device)
    return torch.cat([first, offset + (offset >= first).long()], dim=1)


def sample_two_ops(alpha: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Algorithm 1: z = softmax((alpha + Gumbel) / tau), a pair {o1, o2} per row drawn with
    probability (z_o1 + z_o2) / (|O| - 1), weights z_o / (z_o1 + z_o2) on the pair, 0 elsewhere.

    The pair weights are a softmax over the pair's two logits (the same value, without the
    underflow of z_o1 + z_o2 at small tau), floored at the smallest normal float so that both
    sampled ops stay non-zero. Differentiable with respect to ``alpha`` through the weights.
    """
    with torch.autocast(alpha.device.type, enabled=False):
        logits = _relaxed_logits(alpha, tau, generator)
        pair = draw_pairs(torch.softmax(logits.detach(), dim=-1), generator)
        w = torch.softmax(logits.gather(1, pair), dim=1).clamp_min(torch.finfo(torch.float32).tiny)
        return torch.zeros_like(logits).scatter(1, pair, w)


def sample_one_op(alpha: torch.Tensor, tau: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Single path (GDAS): the argmax of z with a straight-through gradient through z."""
    z = relaxed_weights(alpha, tau, generator)
    hard = torch.zeros_like(z).scatter(1, z.argmax(dim=1, keepdim=True), 1.0)
    return hard - z.detach() + z


def mixture_weights(alpha: torch.Tensor) -> torch.Tensor:
    """DARTS: every op, weighted by softmax(alpha)."""
    _check_alpha(alpha)
    with torch.autocast(alpha.device.type, enabled=False):
        return torch.softmax(alpha.float(), dim=-1)


def sample_weights(alpha: torch.Tensor, tau: float, mode: str,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Dispatch to the sampler of ``mode`` (one of ``SAMPLING_MODES``)."""
    if mode == "two_op":
        return sample_two_ops(alpha, tau, generator)
    if mode == "one_op":
        return sample_one_op(alpha, tau, generator)
    if mode == "all":
        return mixture_weights(alpha)
    raise ValueError(f"unknown sampling mode {mode!r}; choose one of {', '.join(SAMPLING_MODES)}")
