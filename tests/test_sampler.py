"""Algorithm 1 against an independent chi-square test, and the sampler's contracts."""
import itertools

import numpy as np
import pytest
import torch
from scipy import stats

from nnunet_scnas import OPS, draw_pairs, mixture_weights, sample_one_op, sample_two_ops
from nnunet_scnas.sampler import relaxed_weights

N_OPS = len(OPS)
PAIRS = list(itertools.combinations(range(N_OPS), 2))


def _pair_counts(pairs: torch.Tensor) -> np.ndarray:
    index = {p: k for k, p in enumerate(PAIRS)}
    counts = np.zeros(len(PAIRS))
    for a, b in pairs.tolist():
        counts[index[(min(a, b), max(a, b))]] += 1
    return counts


def _chi2_p(counts: np.ndarray, probs: np.ndarray) -> float:
    return stats.chisquare(counts, probs / probs.sum() * counts.sum()).pvalue


def test_pair_frequencies_match_paper_formula_and_reject_alternatives():
    g = torch.Generator().manual_seed(0)
    z = torch.tensor([0.40, 0.20, 0.12, 0.10, 0.08, 0.05, 0.03, 0.02])
    n = 60000
    counts = _pair_counts(draw_pairs(z.expand(n, N_OPS).contiguous(), g))
    paper = np.array([(z[a] + z[b]).item() / (N_OPS - 1) for a, b in PAIRS])
    assert abs(paper.sum() - 1) < 1e-6  # the formula is a distribution over the 28 pairs
    assert _chi2_p(counts, paper) > 1e-3
    # plausible wrong implementations are rejected by the same test
    product = np.array([(z[a] * z[b]).item() for a, b in PAIRS])
    without_replacement = np.array([(z[a] * z[b] / (1 - z[a]) + z[b] * z[a] / (1 - z[b])).item() for a, b in PAIRS])
    uniform = np.ones(len(PAIRS))
    for wrong in (product, without_replacement, uniform):
        assert _chi2_p(counts, wrong) < 1e-12


def test_end_to_end_pair_marginals_match_expected_relaxed_weights():
    # P({a,b}) marginalised over the Gumbel noise is (E[z_a] + E[z_b]) / 7; estimate E[z]
    # from independent draws of the relaxation and compare with what sample_two_ops picks.
    alpha = torch.tensor([[1.5, 0.5, 0.0, -0.5, 0.2, -1.0, 0.8, -0.3]])
    tau, n = 1.0, 30000
    g = torch.Generator().manual_seed(1)
    ez = relaxed_weights(alpha.expand(200000, N_OPS), tau, g).mean(0)
    w = sample_two_ops(alpha.expand(n, N_OPS).contiguous(), tau, torch.Generator().manual_seed(2))
    pairs = torch.stack([torch.nonzero(r).flatten() for r in w])
    expected = np.array([(ez[a] + ez[b]).item() / (N_OPS - 1) for a, b in PAIRS])
    assert _chi2_p(_pair_counts(pairs), expected) > 1e-3


def test_rows_have_two_nonzeros_summing_to_one_and_weights_match_z():
    alpha = torch.randn(14, N_OPS)
    for tau in (10.0, 1.0, 0.1, 1e-3):
        w = sample_two_ops(alpha, tau, torch.Generator().manual_seed(3))
        assert ((w != 0).sum(1) == 2).all()
        assert torch.allclose(w.sum(1), torch.ones(14))
        assert torch.isfinite(w).all()
    # the two weights are z_o1 / (z_o1 + z_o2) for the same Gumbel draw
    z = relaxed_weights(alpha, 1.0, torch.Generator().manual_seed(4))
    w = sample_two_ops(alpha, 1.0, torch.Generator().manual_seed(4))
    for row_w, row_z in zip(w, z):
        idx = torch.nonzero(row_w).flatten()
        assert torch.allclose(row_w[idx], row_z[idx] / row_z[idx].sum(), atol=1e-6)


def test_gradients_reach_alpha():
    alpha = torch.zeros(14, N_OPS, requires_grad=True)
    w = sample_two_ops(alpha, 1.0, torch.Generator().manual_seed(5))
    (w * torch.arange(N_OPS).float()).sum().backward()
    assert alpha.grad is not None and alpha.grad.abs().sum() > 0
    # only the two sampled logits of each row receive gradient
    assert ((alpha.grad != 0).sum(1) <= 2).all()


def test_tiny_tau_puts_almost_all_weight_on_one_op():
    alpha = torch.randn(14, N_OPS)
    w = sample_two_ops(alpha, 1e-3, torch.Generator().manual_seed(6))
    assert (w.max(1).values > 0.999).float().mean() > 0.9


def test_generator_makes_draws_reproducible():
    alpha = torch.randn(14, N_OPS)
    a = sample_two_ops(alpha, 1.0, torch.Generator().manual_seed(7))
    b = sample_two_ops(alpha, 1.0, torch.Generator().manual_seed(7))
    c = sample_two_ops(alpha, 1.0, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_one_op_and_all_modes():
    alpha = torch.randn(14, N_OPS, requires_grad=True)
    w = sample_one_op(alpha, 1.0, torch.Generator().manual_seed(9))
    assert ((w != 0).sum(1) == 1).all()
    assert torch.allclose(w.sum(1), torch.ones(14))
    w.max(1).values.sum().backward()
    assert alpha.grad.abs().sum() > 0
    m = mixture_weights(alpha)
    assert (m > 0).all() and torch.allclose(m, torch.softmax(alpha, -1))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sampling_stays_float32_under_autocast(dtype):
    alpha = torch.randn(14, N_OPS, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        w = sample_two_ops(alpha, 0.5, torch.Generator().manual_seed(10))
        m = mixture_weights(alpha)
    assert w.dtype == torch.float32 and m.dtype == torch.float32
    # float32 keeps weights that float16 / bfloat16 would round: the pair still sums to 1 exactly enough
    assert torch.allclose(w.sum(1), torch.ones(14), atol=1e-6)


@pytest.mark.parametrize("tau", [1e-3, 1e-4])
def test_tiny_tau_stays_finite_with_finite_gradients(tau):
    alpha = (5 * torch.randn(14, N_OPS)).requires_grad_()
    w = sample_two_ops(alpha, tau, torch.Generator().manual_seed(11))
    assert torch.isfinite(w).all() and ((w > 0).sum(1) == 2).all()
    (w * torch.randn(14, N_OPS)).sum().backward()
    assert torch.isfinite(alpha.grad).all()


def test_non_finite_gumbel_noise_is_redrawn(monkeypatch):
    """A non-finite draw (e.g. a faulty RNG kernel) is replaced, never passed on as a NaN weight."""
    from nnunet_scnas import sampler
    real_rand, calls = torch.rand, []

    def bad_then_good(*args, **kwargs):
        u = real_rand(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            u[0, 0] = float("nan")
        return u
    monkeypatch.setattr(sampler.torch, "rand", bad_then_good)
    w = sample_two_ops(torch.zeros(14, N_OPS), 1.0, torch.Generator().manual_seed(12))
    assert len(calls) == 2 and torch.isfinite(w).all()

    monkeypatch.setattr(sampler.torch, "rand", lambda *a, **k: torch.full(a[0], float("nan")))
    with pytest.raises(FloatingPointError, match="Gumbel noise was not finite"):
        sample_two_ops(torch.zeros(14, N_OPS), 1.0)


def test_non_finite_alpha_is_refused():
    alpha = torch.zeros(14, N_OPS)
    alpha[3, 2] = float("nan")
    with pytest.raises(FloatingPointError, match="alpha contains NaN"):
        sample_two_ops(alpha, 1.0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        sample_two_ops(torch.zeros(14, N_OPS), 0.0)
