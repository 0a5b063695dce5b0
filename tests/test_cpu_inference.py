"""The CPU kernels give what PyTorch's own kernels give (the training form its gradient too), and are
what inference (training) runs."""
import pytest
import torch
import torch.nn.functional as F

from nnunet_scnas import Genotype, SCNASNetwork
from nnunet_scnas.cpu_inference import avg_pool3x3x3, dilated_depthwise_conv3x3x3, max_pool3x3x3
from nnunet_scnas.cpu_training import avg_pool3x3x3_train, conv3x3x3_train
from nnunet_scnas.operations import make_op

SIZES = [(8, 8, 8), (5, 7, 9), (3, 4, 3), (6, 12, 4)]  # the coarsest level holds at least 3


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("stride", [1, 2])
def test_pools_equal_torch(size, stride):
    x = torch.randn(2, 3, *size)
    assert torch.equal(max_pool3x3x3(x, stride), F.max_pool3d(x, 3, stride, padding=1))
    ref = F.avg_pool3d(x, 3, stride, padding=1, count_include_pad=False)
    out = avg_pool3x3x3(x, stride)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", SIZES + [(13, 8, 11)])
@pytest.mark.parametrize("dilation", [2, 3, 4])
def test_dilated_depthwise_conv_equals_torch(size, dilation):
    x = torch.randn(2, 5, *size)
    w = torch.randn(5, 1, 3, 3, 3)
    ref = F.conv3d(x, w, padding=dilation, dilation=dilation, groups=5)
    torch.testing.assert_close(dilated_depthwise_conv3x3x3(x, w, dilation), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["sep_dil_conv_3x3x3_r3", "max_pool_3x3x3", "avg_pool_3x3x3"])
def test_ops_use_the_kernels_only_without_autograd(name, monkeypatch):
    import nnunet_scnas.operations as operations
    calls = []
    for kernel in ("max_pool3x3x3", "avg_pool3x3x3", "dilated_depthwise_conv3x3x3"):
        original = getattr(operations, kernel)
        monkeypatch.setattr(operations, kernel, lambda *a, _f=original: calls.append(1) or _f(*a))
    op = make_op(name, 4, 1)
    x = torch.randn(1, 4, 8, 8, 8, requires_grad=True)
    trained = op(x)
    assert not calls  # training: kernels with a backward (PyTorch's, or cpu_training's avg pool)
    with torch.no_grad():
        inferred = op(x)
    assert calls
    torch.testing.assert_close(inferred, trained.detach(), rtol=1e-4, atol=1e-5)


def test_derived_network_inference_equals_the_reference_path():
    genotype = Genotype.load("docs/example_genotype.json")
    net = SCNASNetwork(2, 3, genotype, 8, deep_supervision=False).eval()
    x = torch.randn(1, 2, 24, 32, 24)
    with torch.no_grad():
        fast = net(x)
    reference = net(x.requires_grad_())  # autograd on: PyTorch's own kernels
    torch.testing.assert_close(fast, reference.detach(), rtol=1e-4, atol=1e-4)


def test_flop_counter_counts_the_same_on_cpu_tensors_as_on_meta():
    from torch.utils.flop_counter import FlopCounterMode
    from nnunet_scnas import count_flops
    net = SCNASNetwork(1, 3, Genotype.load("docs/example_genotype.json"), 8, deep_supervision=False).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.randn(1, 1, 24, 32, 24))
    # equal up to the zero padding the space-to-batch conv adds where a size is not a multiple
    # of the dilation (the CPU really does that work); without the oneDNN formula it is 45 %
    assert counter.get_total_flops() == pytest.approx(count_flops(net, [1, 1, 24, 32, 24]), rel=0.02)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_training_avg_pool_equals_torch_with_its_gradient(size, stride, layout):
    x = torch.randn(2, 3, *size, dtype=torch.float64).contiguous(memory_format=layout)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = avg_pool3x3x3_train(ours, stride)
    expected = F.avg_pool3d(ref, 3, stride, padding=1, count_include_pad=False)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(ours.grad, ref.grad)
    assert ours.grad.is_contiguous(memory_format=layout)  # CPU training's layout is kept


def test_cpu_training_runs_the_separable_avg_pool(monkeypatch):
    import nnunet_scnas.operations as operations
    calls = []
    monkeypatch.setattr(operations, "avg_pool3x3x3_train", lambda *a: calls.append(1) or avg_pool3x3x3_train(*a))
    make_op("avg_pool_3x3x3", 4, 2)(torch.randn(1, 4, 8, 8, 8, requires_grad=True)).sum().backward()
    assert calls
    monkeypatch.setattr(operations, "FAST_CPU_TRAINING", False)
    make_op("avg_pool_3x3x3", 4, 2)(torch.randn(1, 4, 8, 8, 8, requires_grad=True)).sum().backward()
    assert len(calls) == 1


@pytest.mark.parametrize("stride, dilation", [(1, 2), (2, 2), (1, 3), (2, 3)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_cpu_training_dilated_conv_has_pytorchs_value_and_gradients(stride, dilation, layout):
    """The swapped forward conv that gives the weight gradient at dilation 2 and 3 (``conv3x3x3_train``)
    is the gradient of PyTorch's conv, at both strides and in both layouts (float64, odd and even sizes)."""
    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 10, 11, dtype=torch.float64).contiguous(memory_format=layout)
    w = torch.randn(3, 5, 3, 3, 3, dtype=torch.float64).contiguous(memory_format=layout)
    results = []
    for conv in (conv3x3x3_train, lambda x, w, s, d: F.conv3d(x, w, None, s, d, d)):
        xi, wi = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = conv(xi, wi, stride, dilation)
        y.backward(torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y))
        results.append((y.detach(), xi.grad, wi.grad))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref)


def test_cpu_training_dilated_conv_under_cpu_autocast_runs_pytorchs_backward():
    x = torch.randn(1, 4, 8, 8, 8, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv3x3x3_train(x, w, 1, 2)
    y.float().sum().backward()  # the swapped conv would mix bfloat16 and the saved float32 tensors
    assert y.dtype == torch.bfloat16 and x.grad.shape == x.shape and w.grad.shape == w.shape
