"""``estimate_training_memory`` against what autograd really keeps, measured on the CPU.

The reference is saved-tensor accounting (as bench/saved_tensors.py): every tensor autograd saves
for backward during one training forward pass, counted once per storage, parameters excluded
(the estimate counts those separately, 16 bytes each). Unlike a peak-memory reading this is exact
and noise-free, and float32 on the CPU, so the estimate is asked for 4 bytes per activation and no
overhead.

Margin: the estimate must lie within [0.9, 1.35] x the measured bytes. It counts module outputs
instead of saved tensors, which differs in known ways: it misses the LeakyReLUs that cells apply
as functions and the network input (so it may be low), and it counts outputs autograd frees, the
InstanceNorm output of each derived-cell op (it only feeds a sum) and, with checkpointing, the raw
cell outputs (so it may be high). Low by more than 10% would risk running out of memory with the
planned patch, as ``overhead_gb`` stands for the allocator and the CUDA context, not for missed
activations; high by more than 35% would plan away a quarter of the GPU.
"""
import pytest
import torch

from nnunet_scnas import CELL_TYPES, Genotype, SCNASNetwork, SearchNetwork, operations
from nnunet_scnas.tools.memory import estimate_training_memory, worst_case_two_op_weights

LOW, HIGH = 0.9, 1.35
SHAPE = (1, 4, 32, 32, 32)
STEM = 8


def saved_bytes(net, x):
    """Bytes autograd saves in one forward pass: (outside the cells, per cell index)."""
    params = {p.untyped_storage().data_ptr() for p in net.parameters()}
    seen = set()
    outside, per_cell, current = 0, {}, [None]
    cells = list(net.encoder) + list(net.decoder.cells)
    handles = []
    for i, cell in enumerate(cells):
        handles.append(cell.register_forward_pre_hook(lambda m, a, i=i: current.__setitem__(0, i)))
        handles.append(cell.register_forward_hook(lambda m, a, o: current.__setitem__(0, None)))

    def pack(t):
        nonlocal outside
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen and ptr not in params:
            seen.add(ptr)
            if current[0] is None:
                outside += t.untyped_storage().nbytes()
            else:
                per_cell[current[0]] = per_cell.get(current[0], 0) + t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x)
    for h in handles:
        h.remove()
    return outside, per_cell


def estimated_activation_bytes(net, shape, **kw):
    params = sum(p.numel() for p in net.parameters()) * 16  # weights, gradients, Adam's two moments
    return estimate_training_memory(net, shape, bytes_per_activation=4, overhead_gb=0, **kw) * 2 ** 30 - params


@pytest.fixture(autouse=True)
def _cuda_kernels(monkeypatch):
    """The estimate is for CUDA: measure what autograd saves with the kernels used there."""
    monkeypatch.setattr(operations, "FAST_CPU_TRAINING", False)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small CPU convs: threads buy little here and spin against other processes on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _supernet(checkpoint_cells=False):
    net = SearchNetwork(4, 4, STEM, checkpoint_cells=checkpoint_cells).train()
    net.fixed_weights = worst_case_two_op_weights()  # the draw the estimate assumes
    return net


def test_supernet_estimate_matches_saved_tensors():
    net = _supernet()
    outside, per_cell = saved_bytes(net, torch.randn(SHAPE))
    measured = outside + sum(per_cell.values())
    assert LOW <= estimated_activation_bytes(net, SHAPE) / measured <= HIGH


def test_checkpointed_supernet_estimate_matches_outside_plus_the_largest_recomputed_cell():
    """With per-cell checkpointing autograd keeps what lies outside the cells; during backward
    one cell at a time is recomputed with all it saves. The planner's search step is this case."""
    torch.manual_seed(0)
    checkpointed = _supernet(checkpoint_cells=True)
    outside_ck, inside_ck = saved_bytes(checkpointed, torch.randn(SHAPE))
    assert inside_ck == {}  # checkpointing hides what the cells save: nothing is kept for them
    _, per_cell = saved_bytes(_supernet(), torch.randn(SHAPE))
    measured_peak = outside_ck + max(per_cell.values())
    estimate = estimated_activation_bytes(checkpointed, SHAPE, checkpoint_cells=True)
    assert LOW <= estimate / measured_peak <= HIGH
    # and it is far below keeping every cell (what the estimate without checkpointing describes)
    assert estimate < 0.6 * (outside_ck + sum(per_cell.values()))


def test_derived_network_estimate_matches_saved_tensors():
    heavy = Genotype({t: ("sep_dil_conv_3x3x3_r2",) * 14 for t in CELL_TYPES})  # the planner's retrain case
    net = SCNASNetwork(4, 4, heavy, STEM).train()
    outside, per_cell = saved_bytes(net, torch.randn(SHAPE))
    assert LOW <= estimated_activation_bytes(net, SHAPE) / (outside + sum(per_cell.values())) <= HIGH


def test_estimate_terms_parameters_overhead_batch_and_precision():
    net = SCNASNetwork(1, 2, Genotype({t: ("conv_3x3x3",) * 14 for t in CELL_TYPES}), STEM)
    n_params = sum(p.numel() for p in net.parameters())
    gb = 2 ** 30

    def est(batch=1, bpa=2, overhead=0.0):
        return estimate_training_memory(net, (batch, 1, 24, 32, 40), bytes_per_activation=bpa, overhead_gb=overhead)
    # activations in float32 are twice those in float16; what stays is the parameters' 16 bytes each
    assert (2 * est(bpa=2) - est(bpa=4)) * gb == pytest.approx(n_params * 16, rel=1e-9)
    assert est(overhead=1.5) - est() == pytest.approx(1.5)
    # activations grow linearly with the batch
    act = {b: est(batch=b) * gb - n_params * 16 for b in (1, 3)}
    assert act[3] == pytest.approx(3 * act[1], rel=1e-9) and act[1] > 0


def test_estimate_leaves_the_model_as_it_was():
    net = SearchNetwork(1, 2, STEM).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    estimate_training_memory(net, (1, 1, 24, 24, 24))
    assert net.fixed_weights is None and net.training
    assert all(p.device.type == "cpu" for p in net.parameters())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
