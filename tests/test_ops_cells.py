"""Op set and cell shapes in every form, and that unsampled ops never run."""
import pytest
import torch

from nnunet_scnas import OPS, make_op
from nnunet_scnas.operations import PreActivatedOp
from nnunet_scnas.cells import DerivedCell, Preprocess, SearchCell


def test_op_set_is_the_papers_eight_in_order():
    assert OPS == ("conv_3x3x3", "sep_dil_conv_3x3x3_r2", "sep_dil_conv_3x3x3_r3", "sep_dil_conv_3x3x3_r4",
                   "max_pool_3x3x3", "avg_pool_3x3x3", "identity", "zero")


def test_conv_ops_are_leakyrelu_conv_instancenorm():
    conv = make_op("conv_3x3x3", 8)
    assert [type(m).__name__ for m in conv] == ["LeakyReLU", "Conv3d", "InstanceNorm3d"]
    sep = make_op("sep_dil_conv_3x3x3_r3", 8)
    names = [type(m).__name__ for m in sep]
    assert names == ["LeakyReLU", "DilatedDepthwiseConv3d", "Conv3d", "InstanceNorm3d"]
    assert sep[1].groups == 8 and sep[1].dilation == (3, 3, 3) and sep[2].kernel_size == (1, 1, 1)
    assert make_op("zero", 8) is None
    with pytest.raises(ValueError, match="unknown op"):
        make_op("conv_5x5x5", 8)


@pytest.mark.parametrize("name", [o for o in OPS if o != "zero"])
def test_every_op_shape_normal_reduction_expansion(name):
    x = torch.randn(2, 8, 8, 12, 16)
    assert make_op(name, 8, 1)(x).shape == x.shape
    assert make_op(name, 8, 2)(x).shape == (2, 8, 4, 6, 8)
    # expansion: the op runs on the pre-upsampled input
    up = Preprocess(16, 8, -1)(torch.randn(2, 16, 4, 6, 8))
    assert make_op(name, 8, 1)(up).shape == (2, 8, 8, 12, 16)


@pytest.mark.parametrize("cell_type,shift0,shift1,r0,r1,out_res,c_out", [
    ("reduction", 0, 0, 16, 16, 8, 32),      # doubles the width, halves the resolution
    ("enc_normal", 1, 0, 16, 8, 8, 32),      # s0 one level finer
    ("expansion", -1, -1, 8, 8, 16, 16),     # halves the width, pre-upsamples both inputs
    ("dec_normal", -1, 0, 8, 16, 16, 16),    # s0 one level coarser
])
def test_every_cell_type_shape(cell_type, shift0, shift1, r0, r1, out_res, c_out, random_genotype):
    c_in = 16
    s0, s1 = torch.randn(1, c_in, r0, r0, r0), torch.randn(1, c_in, r1, r1, r1)
    cell = SearchCell(cell_type, c_in, c_in, c_out, shift0, shift1)
    w = torch.softmax(torch.randn(14, 8), -1)
    out = cell(s0, s1, w, [list(range(8))] * 14)
    assert out.shape == (1, c_out, out_res, out_res, out_res)
    fixed = DerivedCell(cell_type, random_genotype.cells[cell_type], c_in, c_in, c_out, shift0, shift1)
    assert fixed(s0, s1).shape == out.shape


def test_node_with_only_zero_edges_outputs_zeros():
    cell = DerivedCell("enc_normal", ("zero",) * 14, 8, 8, 16, 0, 0)
    out = cell(torch.randn(1, 8, 8, 8, 8), torch.randn(1, 8, 8, 8, 8))
    assert out.shape == (1, 16, 8, 8, 8) and out.abs().sum() == 0
    assert len(cell.edges) == 0


def test_unsampled_ops_never_run():
    cell = SearchCell("enc_normal", 8, 8, 16, 0, 0)
    calls = {}
    for key, edge in cell.edges.items():
        for name, op in edge.items():
            hooked = op[-1] if isinstance(op, PreActivatedOp) else op  # every conv op ends in its norm
            hooked.register_forward_hook(lambda m, i, o, k=(key, name): calls.__setitem__(k, calls.get(k, 0) + 1))
    w = torch.zeros(14, 8)
    active = []
    for k in range(14):
        a, b = (k % 7, (k + 3) % 8)
        w[k, a], w[k, b] = 0.6, 0.4
        active.append([a, b])
    cell(torch.randn(1, 8, 8, 8, 8), torch.randn(1, 8, 8, 8, 8), w, active)
    from nnunet_scnas.genotypes import EDGES
    expected = {(f"{i}_{j}", OPS[o]) for (i, j), act in zip(EDGES, active) for o in act if OPS[o] != "zero"}
    assert set(calls) == expected
    assert all(v == 1 for v in calls.values())


@pytest.mark.parametrize("stride", [1, 2])
def test_cell_path_equals_weighted_ops_run_alone(stride):
    """Inside a cell, conv ops share one LeakyReLU per node, the edge weight is folded into the
    norm, and max pooling recomputes its indices in backward: none of it may change the maths."""
    from nnunet_scnas.cells import NodeInput
    torch.manual_seed(0)
    names = ("conv_3x3x3", "sep_dil_conv_3x3x3_r2", "max_pool_3x3x3", "avg_pool_3x3x3", "identity")
    ops = [make_op(n, 8, stride) for n in names]
    for op in ops:
        for p in op.parameters():
            p.data.uniform_(0.5, 1.5)  # non-trivial affine
    x = torch.randn(1, 8, 8, 8, 8, requires_grad=True)
    w = torch.rand(len(ops), requires_grad=True)
    params = [x, w] + [p for op in ops for p in op.parameters()]
    alone = sum(w[k] * op(x) for k, op in enumerate(ops))
    g_alone = torch.autograd.grad(alone.square().sum(), params)
    node = NodeInput(x)
    shared = sum(node.run(op, w[k]) for k, op in enumerate(ops))
    g_shared = torch.autograd.grad(shared.square().sum(), params)
    torch.testing.assert_close(shared, alone)
    for a, b in zip(g_shared, g_alone):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # float32 summation order
    assert node._activated is not None  # computed once, reused by both conv ops


def test_max_pool_with_recomputed_indices_has_the_same_gradient():
    from nnunet_scnas.operations import _MaxPoolRecomputeIndices
    for stride in (1, 2):
        x = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
        g = torch.randn(2, 3, 8 // stride, 8 // stride, 8 // stride)
        ref, = torch.autograd.grad(torch.nn.functional.max_pool3d(x, 3, stride, 1), x, g)
        out = _MaxPoolRecomputeIndices.apply(x, stride)
        got, = torch.autograd.grad(out, x, g)
        torch.testing.assert_close(out, torch.nn.functional.max_pool3d(x, 3, stride, 1))
        torch.testing.assert_close(got, ref)


def test_leaky_relu_saving_its_output_has_torchs_gradient():
    from nnunet_scnas.operations import leaky_relu
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0] * 3, requires_grad=True)
    g = torch.randn(15)
    ref, = torch.autograd.grad(torch.nn.functional.leaky_relu(x, 1e-2), x, g)
    got, = torch.autograd.grad(leaky_relu(x), x, g)
    assert torch.equal(got, ref)


def test_training_keeps_no_raw_cell_output(random_genotype):
    """Every reader of a cell output starts with LeakyReLU; autograd must keep only the activated
    copy, never the concatenated raw output (the memory of docs/BENCHMARKS.md, section 1)."""
    from nnunet_scnas import SCNASNetwork
    from nnunet_scnas.search_model import SearchNetwork
    for net in (SearchNetwork(2, 3, 8), SCNASNetwork(2, 3, random_genotype, 8)):
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(type(t.grad_fn).__name__) or t,
                                                      lambda t: t):
            out = net.train()(torch.randn(1, 2, 24, 24, 24))
        assert "CatBackward0" not in saved
        sum(o.sum() for o in out).backward()  # and the graph is complete
        assert net.stem[0].weight.grad is not None
