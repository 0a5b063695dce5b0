"""The bi-level step (nnunet_scnas/bilevel.py) on a tiny supernet, without nnU-Net: each step moves
only its own group; a non-finite loss, gradient or alpha never reaches alpha or the weights (with
and without a grad scaler: the CUDA AMP branch, run by a CPU GradScaler); gradients are averaged
over a process group."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunet_scnas import SearchNetwork
from nnunet_scnas.bilevel import BilevelStep
from nnunet_scnas.recipe import SEARCH

DATA = torch.randn(1, 1, 24, 24, 24)


def mean_loss(outputs, target):
    return outputs[0].float().mean()


def _make(scaler: bool = False, loss=mean_loss, **kwargs) -> tuple[SearchNetwork, BilevelStep, list[str]]:
    net = SearchNetwork(1, 2, stem_channels=4)
    net.generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(
        [{"params": net.weight_parameters(), "lr": SEARCH.weight_lr, "betas": SEARCH.weight_betas},
         {"params": net.arch_parameters(), "lr": SEARCH.arch_lr, "betas": SEARCH.arch_betas}])
    log: list[str] = []
    step = BilevelStep(net, net, loss, optimizer, grad_scaler=torch.amp.GradScaler("cpu") if scaler else None,
                       log=log.append, **kwargs)
    return net, step, log


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: threads only add waiting
    yield
    torch.set_num_threads(threads)


def _snapshot(params) -> list[torch.Tensor]:
    return [p.detach().clone() for p in params]


def _moved(params, before) -> list[bool]:
    return [not torch.equal(p, b) for p, b in zip(params, before)]


def test_each_step_moves_only_its_own_group():
    net, step, log = _make()
    alphas, weights = net.arch_parameters(), net.weight_parameters()
    a0, w0 = _snapshot(alphas), _snapshot(weights)
    loss = step.arch_step(DATA, None)
    assert math.isfinite(loss) and not log
    assert all(_moved(alphas, a0)) and not any(_moved(weights, w0))
    a1, w1 = _snapshot(alphas), _snapshot(weights)
    step.weight_step(DATA, None)
    assert not any(_moved(alphas, a1))
    assert sum(_moved(weights, w1)) > 10  # the stem, preprocessing, the drawn ops and heads


def test_arch_step_follows_the_gradient_of_the_loss():
    """Adam's first step moves each logit by -lr * g / (|g| + eps): check against autograd."""
    net, step, _ = _make()
    alpha = net.arch_parameters()[0]
    before = alpha.detach().clone()
    net.generator.manual_seed(1)
    grad = torch.autograd.grad(mean_loss(net(DATA), None), alpha)[0]
    net.generator.manual_seed(1)  # the same draw
    step.arch_step(DATA, None)
    moved = grad != 0
    assert moved.sum() >= 14 * 2 - 14  # at least one drawn op per edge with a non-zero weight gradient
    expected = before - SEARCH.arch_lr * grad / (grad.abs() + 1e-8)
    assert torch.allclose(alpha[moved], expected[moved], atol=1e-6)
    assert torch.equal(alpha[~moved], before[~moved])


def _alpha_and_state(net, step) -> list:
    return [(a.detach().clone(), {k: v.clone() for k, v in step.optimizer.state[a].items()})
            for a in net.arch_parameters()]


def _assert_unchanged(net, step, before) -> None:
    for a, (value, state) in zip(net.arch_parameters(), before):
        assert torch.equal(a, value)
        assert state.keys() == step.optimizer.state[a].keys()
        assert all(torch.equal(v, step.optimizer.state[a][k]) for k, v in state.items())


@pytest.mark.parametrize("scaler", [False, True], ids=["no scaler", "grad scaler"])
@pytest.mark.parametrize("loss, logged", [
    (lambda outputs, target: outputs[0].mean() * float("nan"), "non-finite loss nan"),
    (lambda outputs, target: (outputs[0].mean() * 0).abs().sqrt(), "non-finite gradient"),  # loss 0, grad 0 * inf
])
def test_non_finite_loss_or_gradient_skips_the_step_and_is_logged(scaler, loss, logged):
    net, step, log = _make(scaler)
    step.arch_step(DATA, None)  # an Adam state to protect
    before = _alpha_and_state(net, step)
    weights = _snapshot(net.weight_parameters())
    step.loss = loss
    result = step.arch_step(DATA, None, " at epoch 3, iteration 7")
    _assert_unchanged(net, step, before)
    assert (math.isnan(result)) == ("nan" in logged)
    assert log == [f"WARNING: {logged} in the alpha step at epoch 3, iteration 7; step skipped"]
    step.weight_step(DATA, None)
    assert not any(_moved(net.weight_parameters(), weights))
    assert log[-1].startswith(f"WARNING: {logged} in the weights step")


@pytest.mark.parametrize("scaler", [False, True], ids=["no scaler", "grad scaler"])
def test_an_alpha_step_that_makes_alpha_non_finite_is_undone(scaler):
    net, step, log = _make(scaler)
    step.arch_step(DATA, None)
    before = _alpha_and_state(net, step)
    step.optimizer.param_groups[1]["lr"] = float("inf")
    assert math.isnan(step.arch_step(DATA, None))
    _assert_unchanged(net, step, before)
    assert log == ["WARNING: the alpha step made alpha non-finite; step undone"]
    step.optimizer.param_groups[1]["lr"] = SEARCH.arch_lr
    step.arch_step(DATA, None)
    assert not torch.equal(net.arch_parameters()[0], before[0][0])  # later steps still move alpha


def _rank(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    torch.manual_seed(0)  # the same network on both ranks
    net, step, _ = _make(distributed=True)
    net.generator.manual_seed(5)  # the same draw on both ranks, different data
    data = torch.randn(1, 1, 24, 24, 24, generator=torch.Generator().manual_seed(100 + rank))
    local = []
    average = step.average
    step.average = lambda params: (local.extend(p.grad.clone() for p in params), average(params))
    step.arch_step(data, None)
    torch.save({"local": local, "averaged": [a.grad for a in net.arch_parameters()],
                "alpha": [a.detach() for a in net.arch_parameters()]}, os.path.join(out_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def test_gradients_are_averaged_over_the_process_group(tmp_path):
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt") for r in (0, 1))
    assert any(not torch.equal(a, b) for a, b in zip(r0["local"], r1["local"]))  # the ranks saw different data
    for a, b, m0, m1 in zip(r0["local"], r1["local"], r0["averaged"], r1["averaged"]):
        assert torch.allclose(m0, (a + b) / 2, atol=1e-7) and torch.equal(m0, m1)
    assert all(torch.equal(a, b) for a, b in zip(r0["alpha"], r1["alpha"]))
