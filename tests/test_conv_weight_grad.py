"""The CPU training speedups compute the same thing: the GEMM weight gradient of
``common.conv_weight_grad.Conv2d`` against nn.Conv2d's, the fused SGD against the per-parameter
loop, and the inference fast path with its convolution weights stored in bf16 against autocast
casting them on every call (bit-identical)."""
import copy

import pytest
import torch

import common.conv_weight_grad as cwg
from common.amp import MixedPrecision
from common.device_caps import caps
from common.fuse import fast_inference_model
from common.training import sgd
from conftest import NETWORKS

# (in, out, kernel, stride, padding, dilation, bias): strided, dilated, 1x1, non-square
SHAPES = [(8, 6, 3, 1, 1, 1, True), (8, 6, 3, 2, 1, 1, False), (5, 7, 3, 1, 4, 4, True),
          (3, 5, (3, 1), (2, 1), (1, 0), (1, 1), True), (4, 4, 1, 1, 0, 1, False),
          (3, 4, 3, 2, 0, 2, False)]


@pytest.fixture
def always_gemm(monkeypatch):
    monkeypatch.setattr(cwg, "gemm_is_faster", lambda x, conv: True)


def step(conv, x, autocast):
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        y = conv(x)
    y.float().square().sum().backward()
    return y, x.grad


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(i) for i in range(len(SHAPES))])
def test_gemm_weight_gradient_matches_conv2d(shape, channels_last, autocast, always_gemm):
    *args, bias = shape
    torch.manual_seed(0)
    ours = cwg.Conv2d(*args, bias=bias).train()
    reference = torch.nn.Conv2d(*args, bias=bias)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, args[0], 9, 11)
    if channels_last:
        ours, reference = (m.to(memory_format=torch.channels_last) for m in (ours, reference))
        x = x.contiguous(memory_format=torch.channels_last)
    calls = []
    original = cwg._GemmWeightGradConv.apply
    cwg._GemmWeightGradConv.apply = lambda *a: calls.append(1) or original(*a)
    try:
        y, grad_x = step(ours, x, autocast)
    finally:
        cwg._GemmWeightGradConv.apply = original
    y_ref, grad_x_ref = step(reference, x, autocast)
    assert calls, "the GEMM path was not taken"
    assert torch.equal(y, y_ref) and torch.equal(grad_x, grad_x_ref)  # oneDNN computes both
    got, expected = ours.weight.grad, reference.weight.grad
    assert got.dtype == torch.float32 and got.stride() == expected.stride()
    tolerance = 1e-2 if autocast else 1e-5  # bf16 products, fp32 sums; else summation order
    assert (got - expected).abs().max() <= tolerance * expected.abs().max()
    if bias:
        torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=1e-2, atol=1e-2)


def test_choice_is_measured_once_per_shape_without_touching_the_rng(monkeypatch):
    monkeypatch.setattr(cwg, "_CHOICES", {})
    conv = cwg.Conv2d(16, 8, 3, padding=2, dilation=2).train()
    x = torch.randn(2, 16, 6, 6)
    timed = []
    real = cwg._seconds
    monkeypatch.setattr(cwg, "_seconds", lambda fn: timed.append(fn) or real(fn))
    rng = torch.get_rng_state()
    conv(x).sum().backward()
    conv(x).sum().backward()
    assert len(timed) == 2 and len(cwg._CHOICES) == 1  # both algorithms, once
    assert torch.equal(torch.get_rng_state(), rng)
    conv(torch.randn(2, 16, 5, 5)).sum()
    assert len(cwg._CHOICES) == 2


@pytest.mark.parametrize("case", ["eval", "no_grad", "deterministic", "many_pixels", "grouped"])
def test_plain_conv2d_outside_small_cpu_training(case, monkeypatch):
    """Eval, export, deterministic runs and large outputs never measure or take the GEMM."""
    monkeypatch.setattr(cwg, "gemm_is_faster", lambda x, conv: pytest.fail("measured"))
    conv = cwg.Conv2d(4, 4, 3, padding=1, groups=2 if case == "grouped" else 1).train()
    side = 40 if case == "many_pixels" else 8  # 2 x 40 x 40 output pixels > MAX_PIXELS
    x = torch.randn(2, 4, side, side)
    if case == "eval":
        conv.eval()
    if case == "deterministic":
        monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    with torch.set_grad_enabled(case != "no_grad"):
        conv(x)


def test_state_dict_is_conv2d():
    assert list(cwg.Conv2d(3, 4, 3).state_dict()) == list(torch.nn.Conv2d(3, 4, 3).state_dict())


def test_sgd_is_fused_where_the_device_has_the_kernel():
    params = [torch.nn.Parameter(torch.randn(4))]
    optim = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4}
    assert sgd(params, optim, MixedPrecision("cpu")).param_groups[0]["fused"]
    assert not caps("npu").fused_sgd  # torch_npu / apex bring their own fused optimizers
    apex_owned = MixedPrecision("cpu")
    apex_owned.apex = object()
    assert not sgd(params, optim, apex_owned).param_groups[0]["fused"]


def test_fused_sgd_takes_the_same_steps():
    torch.manual_seed(0)
    optim = {"lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4}
    fused = [torch.nn.Parameter(torch.randn(300)) for _ in range(3)]
    loop = [torch.nn.Parameter(p.detach().clone()) for p in fused]
    steppers = [sgd(fused, optim, MixedPrecision("cpu")),
                torch.optim.SGD(loop, **optim)]
    for _ in range(10):
        grads = [torch.randn(300) for _ in fused]
        for params, stepper in zip((fused, loop), steppers):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            stepper.step()
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_cpu_training_keeps_weights_contiguous():
    """NHWC training on CPU: channels_last activations, contiguous weights (see device_caps)."""
    assert not caps("cpu").channels_last_weights and caps("cuda").channels_last_weights


@pytest.mark.parametrize("model_name", ["BiSeNetV2", "ICNet"])
def test_bf16_weights_give_the_autocast_output_bit_for_bit(model_name):
    torch.manual_seed(0)
    net = NETWORKS[model_name]().eval()
    x = torch.randn(1, 3, 64, 128)
    per_call = fast_inference_model(net, True)
    stored = fast_inference_model(copy.deepcopy(net), True, torch.bfloat16)
    convs = [m for m in stored.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(per_call(x), stored(x))
