"""Supernet and derived network: modes, gradients, deep supervision, derivation round trip."""
import math
import random

import pytest
import torch

from nnunet_scnas import CELL_TYPES, OPS, Genotype, SCNASNetwork, SearchNetwork, count_flops, count_parameters, derive
from nnunet_scnas.macro import STRIDES
from nnunet_scnas.operations import PreActivatedOp


def _count_op_calls(net):
    """Op executions per op module (hooked on the op's norm, which every conv op runs last)."""
    calls = {}
    for name, module in net.named_modules():
        if name.count(".edges.") and name.rsplit(".", 1)[-1] in OPS:
            hooked = module[-1] if isinstance(module, PreActivatedOp) else module
            hooked.register_forward_hook(lambda m, i, o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
    return calls


@pytest.mark.parametrize("mode,ops_per_edge", [("two_op", 2), ("one_op", 1), ("all", 7)])
def test_supernet_forward_backward_in_every_mode(mode, ops_per_edge):
    net = SearchNetwork(2, 3, stem_channels=8, sampling=mode)
    net.generator = torch.Generator().manual_seed(0)
    calls = _count_op_calls(net)
    x = torch.randn(2, 2, 24, 24, 24)
    out = net(x)
    assert [o.shape for o in out] == [(2, 3, 24, 24, 24), (2, 3, 12, 12, 12), (2, 3, 6, 6, 6)]
    sum(o.square().mean() for o in out).backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in net.arch_parameters())
    assert net.stem[0].weight.grad.abs().sum() > 0
    # 12 cells x 14 edges; zero edges run nothing, so at most ops_per_edge modules per edge
    assert len(calls) <= 12 * 14 * ops_per_edge
    if mode == "all":
        assert len(calls) == 12 * 14 * 7
    else:
        assert len(calls) >= 12 * 14 * ops_per_edge // 2  # far fewer would mean skipped edges


def test_two_op_runs_exactly_the_sampled_ops():
    net = SearchNetwork(1, 2, stem_channels=8)
    calls = _count_op_calls(net)
    gen_state = torch.Generator().manual_seed(3)
    net.generator = gen_state
    weights = None
    orig = net.sample

    def spy():
        nonlocal weights
        weights = orig()
        return weights
    net.sample = spy
    net(torch.randn(1, 1, 24, 24, 24))
    expected = 0
    for cell in list(net.encoder) + list(net.decoder.cells):
        w = weights[cell.cell_type]
        expected += int(((w != 0) & (torch.arange(8) != OPS.index("zero"))).sum())
    assert sum(calls.values()) == expected


def test_eval_mode_is_the_derived_subnetwork_and_matches_a_copied_derived_network():
    net = SearchNetwork(1, 2, stem_channels=8).eval()
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    calls = _count_op_calls(net)
    net(torch.randn(1, 1, 24, 24, 24))
    g = net.genotype()
    n_nonzero = sum(sum(op != "zero" for op in g.cells[c.cell_type]) for c in list(net.encoder) + list(net.decoder.cells))
    assert sum(calls.values()) == n_nonzero


def test_deep_supervision_off_returns_full_resolution_only():
    net = SCNASNetwork(1, 4, Genotype({t: ("conv_3x3x3",) * 14 for t in CELL_TYPES}), stem_channels=8,
                       deep_supervision=False)
    assert net(torch.randn(1, 1, 24, 32, 24)).shape == (1, 4, 24, 32, 24)
    net.decoder.deep_supervision = True
    assert len(net(torch.randn(1, 1, 24, 32, 24))) == 3


def test_spatial_size_not_divisible_by_8_names_axis_and_fix():
    net = SearchNetwork(1, 2, stem_channels=8)
    with pytest.raises(ValueError, match=r"spatial axis 1 has size 44, use 40 or 48"):
        net(torch.randn(1, 1, 24, 44, 24))
    with pytest.raises(ValueError, match=r"spatial axis 2 has size 16, use 24"):
        net(torch.randn(1, 1, 24, 24, 16))


def test_wrong_strides_or_stem_are_rejected():
    g = Genotype({t: ("identity",) * 14 for t in CELL_TYPES})
    with pytest.raises(ValueError, match="strides"):
        SCNASNetwork(1, 2, g, stem_channels=8, strides=[[1, 1, 1], [2, 2, 2], [1, 2, 2], [2, 2, 2]])
    with pytest.raises(ValueError, match="multiple of 4"):
        SCNASNetwork(1, 2, g, stem_channels=10)
    SCNASNetwork(1, 2, g, stem_channels=8, strides=STRIDES)


def test_derive_save_load_build_round_trip(tmp_path):
    net = SearchNetwork(1, 2, stem_channels=8)
    with torch.no_grad():
        for a in net.arch_parameters():
            a.normal_()
    g = net.genotype({"dataset": "Dataset999_Test", "fold": 0})
    g.save(tmp_path / "g.json")
    loaded = Genotype.load(tmp_path / "g.json")
    assert loaded.cells == g.cells
    assert loaded.provenance["dataset"] == "Dataset999_Test"
    assert len(loaded.provenance["alpha_softmax"]["reduction"]) == 14
    for t in CELL_TYPES:  # derived op = argmax of softmax(alpha) (no dead node with N(0,1) alpha is not
        # guaranteed, so compare only edges where the argmax is non-zero)
        best = net.alphas[t].argmax(1).tolist()
        for k, op in enumerate(loaded.cells[t]):
            if OPS[best[k]] != "zero":
                assert op == OPS[best[k]]
    a = SCNASNetwork(3, 5, loaded, stem_channels=8)
    b = SCNASNetwork(3, 5, loaded.to_dict(), stem_channels=8)
    assert [n for n, _ in a.named_parameters()] == [n for n, _ in b.named_parameters()]
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 3, 24, 24, 24)
    a.eval(), b.eval()
    assert torch.allclose(a(x)[0], b(x)[0])


def test_dead_node_gets_its_strongest_non_zero_edge():
    alphas = {t: torch.zeros(14, 8) for t in CELL_TYPES}
    # node 2 has edges 0 (0->2) and 1 (1->2): both prefer zero; edge 1's runner-up is stronger
    alphas["enc_normal"][0, OPS.index("zero")] = 5.0
    alphas["enc_normal"][0, OPS.index("identity")] = 1.0
    alphas["enc_normal"][1, OPS.index("zero")] = 5.0
    alphas["enc_normal"][1, OPS.index("conv_3x3x3")] = 3.0
    g = derive(alphas)
    assert g.cells["enc_normal"][0] == "zero"
    assert g.cells["enc_normal"][1] == "conv_3x3x3"
    # other nodes: all-equal logits -> argmax picks the first op
    assert g.cells["enc_normal"][2] == "conv_3x3x3"


def _cost_by_hand(cells, c_in, stem, classes, spatial, deep_supervision):
    """(FLOPs, parameters) of a derived network, worked out from the architecture (docs/DESIGN.md,
    macro.py and cells.py docstrings), not from its modules. FLOPs as torch.utils.flop_counter
    counts them: 2 per multiply-add of a convolution (no bias, norm or pooling); a transposed conv
    costs its weight size per *input* voxel, which for a 2x2x2 stride-2 one equals 1 multiply-add
    per weight-channel pair and output voxel, as the forward conv it mirrors.

    Levels: the stem is level 0; cells run reduction, enc_normal x3 (levels 1..3), then expansion,
    dec_normal x3 (levels 2..0). Cell n reads outputs n-2 and n-1 (the first reads the stem twice),
    outputs stem * 2**level channels as 4 nodes of a quarter of that. Each input is brought to the
    cell's working level (a reduction cell's input level, otherwise its output level) by a 1x1x1
    conv (same level), a 2x2x2 stride-2 conv (one finer) or a 2x2x2 stride-2 transposed conv (one
    coarser), each + InstanceNorm. Ops run at the node resolution; reduction cells run the edges
    from their two inputs at stride 2. Heads: 1x1x1 conv with bias on the three decoder-normal
    cells (levels 2, 1, 0); without deep supervision only the last runs.
    """
    sequence = ["reduction", "enc_normal"] * 3 + ["expansion", "dec_normal"] * 3
    step = {"reduction": 1, "enc_normal": 0, "expansion": -1, "dec_normal": 0}

    def voxels(level):
        return math.prod(s // 2 ** level for s in spatial)

    macs = c_in * stem * 27 * voxels(0)
    params = c_in * stem * 27 + 2 * stem  # stem conv (no bias) + InstanceNorm affine
    levels, widths = [0], [stem]
    for n, cell_type in enumerate(sequence, start=1):
        level = levels[n - 1] + step[cell_type]
        work = level - 1 if cell_type == "reduction" else level
        c = stem * 2 ** level // 4
        for src in (max(n - 2, 0), n - 1):
            kernel = {0: 1, 1: 8, -1: 8}[work - levels[src]]
            weights = widths[src] * c * kernel
            macs += weights * (voxels(work) if work >= levels[src] else voxels(levels[src]))
            params += weights + 2 * c
        for op in cells[cell_type]:
            if op == "conv_3x3x3":
                macs += c * c * 27 * voxels(level)
                params += c * c * 27 + 2 * c
            elif op.startswith("sep_dil_conv"):  # depthwise 3x3x3 + pointwise 1x1x1
                macs += (c * 27 + c * c) * voxels(level)
                params += c * 27 + c * c + 2 * c
        levels.append(level)
        widths.append(stem * 2 ** level)
    for n in (8, 10, 12):
        params += widths[n] * classes + classes
        if deep_supervision or n == 12:
            macs += widths[n] * classes * voxels(levels[n])
    return 2 * macs, params


IDENTITY_OR_ZERO = {t: tuple("zero" if k % 3 == 0 else "identity" for k in range(14)) for t in CELL_TYPES}


@pytest.mark.parametrize("deep_supervision", [False, True])
def test_cost_without_conv_ops_is_stem_preprocessing_and_heads_exactly(deep_supervision):
    """At paper scale (stem 68, 4 x 128^3), counted on the meta device (nothing allocated)."""
    net = SCNASNetwork(4, 3, Genotype(IDENTITY_OR_ZERO), stem_channels=68, deep_supervision=deep_supervision)
    flops, params = _cost_by_hand(IDENTITY_OR_ZERO, 4, 68, 3, (128, 128, 128), deep_supervision)
    assert count_flops(net, (1, 4, 128, 128, 128)) == flops
    assert count_parameters(net) == params


@pytest.mark.parametrize("stem,spatial", [(48, (128, 128, 128)), (68, (128, 128, 128)), (8, (24, 32, 40))])
def test_cost_with_every_op_is_exact(stem, spatial):
    rnd = random.Random(stem)
    cells = {t: tuple(rnd.choice(OPS) for _ in range(14)) for t in CELL_TYPES}
    cells["enc_normal"] = OPS + OPS[:6]  # every op at least once, whatever the draw
    net = SCNASNetwork(2, 5, Genotype(cells), stem_channels=stem, deep_supervision=False)
    flops, params = _cost_by_hand(cells, 2, stem, 5, spatial, False)
    assert count_flops(net, (1, 2, *spatial)) == flops
    assert count_parameters(net) == params


def _every_op_genotype() -> Genotype:
    ops = [o for o in OPS if o != "zero"]
    return Genotype({t: tuple(ops[(k + i) % len(ops)] for k in range(14)) for i, t in enumerate(CELL_TYPES)})


@pytest.mark.parametrize("supernet", [False, True])
def test_fast_cpu_training_matches_the_plain_kernels(monkeypatch, supernet):
    """Channels-last with GroupNorm and narrow depthwise convs as dense ones (CPU training; stem 8
    has nodes of 2-32 channels, on both sides of the stride-1 limit) computes what the layout and
    kernels of every other device compute: outputs, input gradient and every parameter's gradient
    agree."""
    from nnunet_scnas import operations
    torch.manual_seed(0)
    if supernet:
        net = SearchNetwork(2, 3, 8).train()
        net.fixed_weights = {t: torch.softmax(torch.randn(14, len(OPS)), -1) for t in CELL_TYPES}
    else:
        net = SCNASNetwork(2, 3, _every_op_genotype(), 8).train()
    x = torch.randn(2, 2, 24, 32, 24)
    results = []
    for fast in (False, True):
        monkeypatch.setattr(operations, "FAST_CPU_TRAINING", fast)
        net.zero_grad()
        xi = x.clone().requires_grad_()
        outs = net(xi)
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs).backward()
        assert outs[0].is_contiguous(memory_format=torch.channels_last_3d) == fast
        results.append(([o.detach() for o in outs], xi.grad, {n: p.grad.clone() for n, p in net.named_parameters()
                                                            if p.grad is not None}))
    (o0, g0, p0), (o1, g1, p1) = results

    def close(fast, plain, what):  # float32 sums in another order: relative to the tensor's scale
        err = (fast - plain).abs().max() / plain.abs().max()
        assert err < 1e-3, f"{what}: relative error {err:.2e}"
    for k, (a, b) in enumerate(zip(o0, o1)):
        close(b, a, f"output {k}")
    close(g1, g0, "input gradient")
    assert p0.keys() == p1.keys() and len(p0) > 50
    for n in p0:
        close(p1[n], p0[n], n)
    # inference after CPU training runs the default layout again, with the same result as a copy
    # that never trained
    copy = (SearchNetwork(2, 3, 8) if supernet else SCNASNetwork(2, 3, _every_op_genotype(), 8)).eval()
    copy.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert torch.equal(net.eval()(x)[0], copy(x)[0])
    assert all(p.is_contiguous() for p in net.parameters())


@pytest.mark.parametrize("stride, dilation", [(1, 2), (2, 3)])
def test_cpu_training_folds_the_pointwise_conv_into_the_dense_depthwise_one(monkeypatch, stride, dilation):
    """CPU training runs a narrow separable op of a derived network as one dense conv (pointwise x depthwise
    weight): output and every gradient equal the two convs', in float64; the edge weight still scales it."""
    from nnunet_scnas import operations
    from nnunet_scnas.operations import SepDilConvOp
    torch.manual_seed(0)
    op = SepDilConvOp(6, stride, dilation).double()
    op.fold_pointwise = True  # as derived networks build it
    assert not any(getattr(m, "fold_pointwise", False) for m in SearchNetwork(1, 2, 8).modules())  # the supernet's
    assert all(m.fold_pointwise for m in SCNASNetwork(1, 2, _every_op_genotype(), 8).modules()  # do not fold
               if isinstance(m, SepDilConvOp))
    for p in op.parameters():
        p.data.uniform_(0.5, 1.5)
    x = torch.randn(2, 6, 9, 10, 11, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    params = [x, scale, *op.parameters()]
    results, convs, swapped = [], [], []
    op[2].register_forward_hook(lambda *_: convs.append(1))  # the pointwise conv
    conv_train = operations.conv3x3x3_train
    monkeypatch.setattr(operations, "conv3x3x3_train", lambda *a: swapped.append(a[3]) or conv_train(*a))
    for fast in (False, True):
        monkeypatch.setattr(operations, "FAST_CPU_TRAINING", fast)
        y = op.after_activation(x, scale)
        results.append((y.detach(), *torch.autograd.grad((y * torch.cos(y)).sum(), params)))
    assert len(convs) == 1  # run only without the fold
    assert swapped == [dilation]  # the folded conv, with its swapped weight gradient (cpu_training)
    for ref, got in zip(*results):
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("stride, dilation", [(1, 2), (1, 4), (2, 3)])
def test_diagonal_weight_dense_conv_is_the_depthwise_conv_with_its_gradients(stride, dilation):
    """CUDA runs narrow depthwise convs as dense convs with ``diagonal_weight`` (CPU training as well, with the
    pointwise conv folded in): same output, same gradients for input and weight (checked here on the CPU, where
    the arithmetic is the same)."""
    from nnunet_scnas.operations import diagonal_weight
    import torch.nn.functional as F
    x = torch.randn(2, 6, 9, 10, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 1, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.randn_like(F.conv3d(x, w, None, stride, dilation, dilation, 6))
    grads = []
    for dense in (False, True):
        y = (F.conv3d(x, diagonal_weight(w), None, stride, dilation, dilation) if dense
             else F.conv3d(x, w, None, stride, dilation, dilation, 6))
        grads.append((y.detach(), *torch.autograd.grad(y, (x, w), g)))
    for ref, got in zip(*grads):
        torch.testing.assert_close(got, ref)
