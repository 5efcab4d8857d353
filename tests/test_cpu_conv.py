"""The CPU speedups compute the same thing: each GEMM part of ``common.cpu_conv.Conv2d``'s
training path and its prepacked inference path against nn.Conv2d, the cached weights
dropped when the weight changes, the pyramid bottleneck against the concatenation it replaces,
eval mode's NHWC run against NCHW, the fused SGD against the per-parameter loop, and the
inference fast path with its convolution weights stored in bf16 against autocast casting them
on every call (bit-identical)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import common.cpu_conv as cc
import common.segmentor as segmentor
from common.amp import MixedPrecision
from common.device_caps import caps
from common.fuse import fast_inference_model, fold_batchnorm, fold_relu
from common.layers import (ConvModule, PyramidPoolingModule, WeightSlices, channel_major,
                           pyramid_bottleneck)
from common.training import sgd
from conftest import NETWORKS

# (in, out, kernel, stride, padding, dilation, bias): strided, dilated, 1x1, non-square
SHAPES = [(8, 6, 3, 1, 1, 1, True), (8, 6, 3, 2, 1, 1, False), (5, 7, 3, 1, 4, 4, True),
          (3, 5, (3, 1), (2, 1), (1, 0), (1, 1), True), (4, 4, 1, 1, 0, 1, False),
          (3, 4, 3, 2, 0, 2, False)]
PARTS = ["forward", "grad_input", "grad_weight"]


@pytest.fixture(autouse=True)
def small_weights_count(monkeypatch):
    """The tests' convolutions are tiny: let them take the measured paths all the same."""
    monkeypatch.setattr(cc, "MIN_WEIGHT", 0)


@pytest.fixture
def fresh_plans(monkeypatch):
    monkeypatch.setattr(cc, "_PLANS", {})


def force_plan(monkeypatch, **parts):
    plan = cc.TrainingPlan(**{p: parts.get(p, False) for p in PARTS})
    monkeypatch.setattr(cc, "training_plan", lambda x, weight, conv: plan)


def step(conv, x, autocast):
    x = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        y = conv(x)
    y.float().square().sum().backward()
    return y, x.grad


def close(got, expected, autocast):
    tolerance = 2e-2 if autocast else 1e-5  # bf16 roundings; else summation order
    return (got.float() - expected.float()).abs().max() <= tolerance * expected.abs().max()


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("shape", SHAPES, ids=[str(i) for i in range(len(SHAPES))])
def test_each_gemm_part_matches_conv2d(shape, part, channels_last, autocast, monkeypatch):
    *args, bias = shape
    force_plan(monkeypatch, **{part: True})
    torch.manual_seed(0)
    ours = cc.Conv2d(*args, bias=bias).train()
    reference = torch.nn.Conv2d(*args, bias=bias)
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, args[0], 9, 11)
    if channels_last:
        ours, reference = (m.to(memory_format=torch.channels_last) for m in (ours, reference))
        x = x.contiguous(memory_format=torch.channels_last)
    calls = []
    original = cc._PlannedConv.apply
    monkeypatch.setattr(cc._PlannedConv, "apply", lambda *a: calls.append(1) or original(*a))
    y, grad_x = step(ours, x, autocast)
    y_ref, grad_x_ref = step(reference, x, autocast)
    assert calls, "the planned path was not taken"
    assert y.dtype == y_ref.dtype and y.shape == y_ref.shape
    assert y.is_contiguous(memory_format=torch.channels_last) == y_ref.is_contiguous(
        memory_format=torch.channels_last)
    assert grad_x.stride() == grad_x_ref.stride()
    for got, expected in ((y, y_ref), (grad_x, grad_x_ref)):
        if part == "grad_weight":
            assert torch.equal(got, expected)  # oneDNN computes both
        else:
            assert close(got, expected, autocast)
    got, expected = ours.weight.grad, reference.weight.grad
    assert got.dtype == torch.float32 and got.stride() == expected.stride()
    assert close(got, expected, autocast)
    if bias:
        torch.testing.assert_close(ours.bias.grad, reference.bias.grad, rtol=1e-2, atol=1e-2)


def test_plan_is_measured_once_per_shape_without_touching_the_rng(fresh_plans, monkeypatch):
    conv = cc.Conv2d(16, 8, 3, padding=2, dilation=2).train()
    x = torch.randn(2, 16, 6, 6)
    timed = []
    real = cc._seconds
    monkeypatch.setattr(cc, "_seconds", lambda fn: timed.append(fn) or real(fn))
    rng = torch.get_rng_state()
    conv(x).sum().backward()
    conv(x).sum().backward()
    assert len(timed) == 6 and len(cc._PLANS) == 1  # two algorithms for each of three parts
    assert torch.equal(torch.get_rng_state(), rng)
    conv(torch.randn(2, 16, 5, 5)).sum()
    assert len(cc._PLANS) == 2


@pytest.mark.parametrize("case", ["eval_with_grad", "deterministic", "many_pixels", "grouped",
                                  "frozen_weight", "small_weight"])
def test_plain_conv2d_outside_small_cpu_training(case, monkeypatch):
    """Gradients in eval mode, deterministic runs, large outputs, grouped convs, frozen and
    small weights never measure the GEMMs."""
    monkeypatch.setattr(cc, "training_plan", lambda *a: pytest.fail("measured"))
    if case == "small_weight":
        monkeypatch.setattr(cc, "MIN_WEIGHT", 4 * 4 * 9 + 1)
    groups = 2 if case == "grouped" else 1
    conv = cc.Conv2d(4, 4, 3, padding=1, groups=groups).train()
    reference = torch.nn.Conv2d(4, 4, 3, padding=1, groups=groups)
    reference.load_state_dict(conv.state_dict())
    side = 40 if case == "many_pixels" else 8  # 2 x 40 x 40 output pixels > MAX_PIXELS
    x = torch.randn(2, 4, side, side).contiguous(memory_format=torch.channels_last)
    if case == "eval_with_grad":
        conv.eval()
    if case == "frozen_weight":
        conv.requires_grad_(False)
        reference.requires_grad_(False)
    if case == "deterministic":
        monkeypatch.setattr(torch, "are_deterministic_algorithms_enabled", lambda: True)
    (y, grad_x), (y_ref, grad_x_ref) = step(conv, x, False), step(reference, x, False)
    assert close(y, y_ref, False) and close(grad_x, grad_x_ref, False)
    if case != "frozen_weight":  # oneDNN all through: the weight cast and laid out once
        assert close(conv.weight.grad, reference.weight.grad, False)
        assert conv.weight.grad.stride() == reference.weight.grad.stride()


def test_state_dict_is_conv2d():
    assert list(cc.Conv2d(3, 4, 3).state_dict()) == list(torch.nn.Conv2d(3, 4, 3).state_dict())


@pytest.fixture
def always_packed(monkeypatch):
    monkeypatch.setattr(cc.Conv2d, "_packing_wins", lambda self, *args: True)
    assert cc.prepacking_available(), "oneDNN's prepacked convolution is missing in this torch"


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("shape", SHAPES, ids=[str(i) for i in range(len(SHAPES))])
def test_prepacked_inference_matches_conv2d(shape, channels_last, autocast, always_packed):
    *args, bias = shape
    torch.manual_seed(0)
    ours = cc.Conv2d(*args, bias=bias).eval()
    reference = torch.nn.Conv2d(*args, bias=bias).eval()
    reference.load_state_dict(ours.state_dict())
    if autocast and not cc.prepacking_available(torch.bfloat16):
        pytest.skip("oneDNN has no native bf16 convolution on this CPU (it refuses to prepack)")
    x = torch.randn(1, args[0], 12, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        y, y_ref = ours(x), reference(x)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert ("packed", torch.bfloat16 if autocast else torch.float32, layout) in cc._DERIVED[ours]
    assert y.dtype == y_ref.dtype and y.stride() == y_ref.stride()
    assert close(y, y_ref, autocast)  # another oneDNN kernel: summation order may differ


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "plain"])
def test_fused_relu_is_the_relu_after_the_convolution(packed, monkeypatch):
    monkeypatch.setattr(cc.Conv2d, "_packing_wins", lambda self, *args: packed)
    torch.manual_seed(0)
    conv = cc.Conv2d(4, 6, 3, padding=1).eval()
    x = torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = torch.relu(conv(x))
        conv.fused_relu = True
        got = conv(x)
    assert (got >= 0).all() and close(got, expected, False)


def test_fold_relu_keeps_the_fast_models_function():
    torch.manual_seed(0)
    net = NETWORKS["BiSeNetV2"]().eval()
    x = torch.randn(1, 3, 64, 96)
    folded_only = copy.deepcopy(net)
    fold_batchnorm(folded_only)
    fast = fast_inference_model(net, True)
    fused = [m for m in fast.modules() if isinstance(m, cc.Conv2d) and m.fused_relu]
    assert len(fused) > 30 and not any(isinstance(m, ConvModule) and m.conv.fused_relu
                                       and m.activate is not None for m in fast.modules())
    assert fold_relu(copy.deepcopy(folded_only)) == len(fused)
    with torch.no_grad():
        assert torch.allclose(fast(x), folded_only(x), atol=1e-5)


def test_cached_weights_follow_the_weight(always_packed):
    PACKED = ("packed", torch.float32, torch.channels_last)
    conv = cc.Conv2d(4, 6, 3, padding=1).eval()
    x = torch.randn(1, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        first = conv(x)
        packed = cc._DERIVED[conv][PACKED][1]
        assert torch.equal(conv(x), first) and cc._DERIVED[conv][PACKED][1] \
            is packed  # reused while the weight is unchanged
        conv.weight.mul_(2)  # e.g. an optimizer step between evaluations
        assert torch.allclose(conv(x), 2 * first - conv.bias.view(1, -1, 1, 1), atol=1e-5)
        assert cc._DERIVED[conv][PACKED][1] is not packed
        conv.double().float()  # new parameter tensors, possibly at the old addresses
        assert conv not in cc._DERIVED
        conv(x)
    conv.train()
    assert conv not in cc._DERIVED  # training drops what was made from the weights
    assert torch.equal(copy.deepcopy(conv).weight, conv.weight)


def test_no_grad_keeps_the_weight_in_the_input_layout(monkeypatch):
    """NHWC input, NCHW weight: the channels_last copy torch would make on every call is
    made once (same values), and the output is nn.Conv2d's."""
    monkeypatch.setattr(cc.Conv2d, "_packing_wins", lambda self, *args: False)
    torch.manual_seed(0)
    conv = cc.Conv2d(6, 5, 3, padding=1).eval()
    x = torch.randn(1, 6, 9, 9).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        y = conv(x)
        kept = cc._DERIVED[conv][("as input", torch.float32, torch.channels_last)][1]
        assert kept.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(kept, conv.weight)
        assert torch.equal(y, F.conv2d(x, conv.weight, conv.bias, padding=1))


def pyramid_pair(x_first, padding=1, dilation=1, dtype=torch.float64):
    torch.manual_seed(0)
    ppm = PyramidPoolingModule((1, 2, 3, 6), 16, 8).to(dtype).train()
    bottleneck = ConvModule(48, 12, 3, padding=padding, dilation=dilation).to(dtype).train()
    return (ppm, bottleneck), copy.deepcopy((ppm, bottleneck))


def concatenated(ppm, bottleneck, x, x_first):
    maps = [x, *ppm(x)] if x_first else [*ppm(x), x]
    return bottleneck(torch.cat(maps, 1))


@pytest.mark.parametrize("x_first", [True, False], ids=["x_first", "pyramid_first"])
@pytest.mark.parametrize("size,padding,dilation", [((8, 16), 1, 1), ((5, 7), 1, 1),
                                                   ((2, 3), 2, 2), ((33, 65), 1, 1)])
def test_pyramid_bottleneck_is_the_concatenation_exactly(size, padding, dilation, x_first):
    """In float64 the reordered sum equals the concatenation to rounding: forward and every
    gradient (input, the bottleneck's weight, a pyramid branch's weight)."""
    (ppm, bottleneck), (ppm_ref, bottleneck_ref) = pyramid_pair(x_first, padding, dilation)
    x = torch.randn(2, 16, *size, dtype=torch.float64, requires_grad=True)
    y = pyramid_bottleneck(ppm, bottleneck, x, x_first)
    y_ref = concatenated(ppm_ref, bottleneck_ref, x, x_first)
    assert (y - y_ref).abs().max() < 1e-12
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, bottleneck.conv.weight, ppm[2][1].conv.weight], g)
    refs = torch.autograd.grad(y_ref, [x, bottleneck_ref.conv.weight, ppm_ref[2][1].conv.weight],
                               g)
    for got, expected in zip(grads, refs):
        assert (got - expected).abs().max() < 1e-10 * expected.abs().max()


def test_pyramid_bottleneck_trains_under_bf16_autocast_channels_last():
    """The bf16 training path (autocast, NHWC, gradients on): the output and the gradients of
    the input and of the bottleneck's weight (fp32, one tensor for all its slices) match the
    concatenation's within bf16 rounding (relative norm of the difference)."""
    (ppm, bottleneck), (ppm_ref, bottleneck_ref) = pyramid_pair(False, dtype=torch.float32)
    for module in (ppm, bottleneck, ppm_ref, bottleneck_ref):
        module.eval()  # BN frozen: train-mode BN on 2 images would amplify each bf16 rounding
    x = torch.randn(2, 16, 9, 12).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16):
        y = pyramid_bottleneck(ppm, bottleneck, x, x_first=False)
        y_ref = concatenated(ppm_ref, bottleneck_ref, x, False)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, bottleneck.conv.weight], g)
    refs = torch.autograd.grad(y_ref, [x, bottleneck_ref.conv.weight], g)
    assert close(y.float(), y_ref.float(), True)
    assert grads[1].dtype == torch.float32 and grads[1].is_contiguous()
    for got, expected in zip(grads, refs):  # 4.9% here, before WeightSlices too; a slice in
        assert (got - expected).norm() <= 1e-1 * expected.norm()  # the wrong place: over 100%


@pytest.mark.parametrize("rounding", [None, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format],
                         ids=["nhwc", "nchw"])
def test_weight_slices_gradient_is_splits_exactly(rounding, layout):
    """WeightSlices gives the slices torch.split and the casts give, and in backward the same
    gradient for the whole weight, bit for bit, written in one pass."""
    torch.manual_seed(0)
    weight = torch.randn(6, 10, 3, 3, requires_grad=True)
    sizes, x_at = (4, 2, 3, 1), 2
    made = WeightSlices.apply(weight, sizes, x_at, rounding, layout)
    ref = [channel_major(w, rounding) if i != x_at
           else w.to(rounding or w.dtype, memory_format=layout)  # what cast_to must equal
           for i, w in enumerate(torch.split(weight, list(sizes), dim=1))]
    assert all(torch.equal(a, b) and a.stride() == b.stride() for a, b in zip(made, ref))
    outs = [torch.randn_like(m) for m in made]
    got = torch.autograd.grad(made, weight, outs)[0]
    expected = torch.autograd.grad(ref, weight, outs)[0]
    assert torch.equal(got, expected)


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16"])
def test_pyramid_bottleneck_in_eval_and_the_fast_path(autocast):
    (ppm, bottleneck), (ppm_ref, bottleneck_ref) = pyramid_pair(True, dtype=torch.float32)
    for module in (ppm, bottleneck, ppm_ref, bottleneck_ref):
        module.eval()
    x = torch.randn(1, 16, 9, 12).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
        y = pyramid_bottleneck(ppm, bottleneck, x)
        y_again = pyramid_bottleneck(ppm, bottleneck, x)  # from the cached channel-major taps
        y_ref = concatenated(ppm_ref, bottleneck_ref, x, True)
    assert torch.equal(y, y_again) and y.dtype == y_ref.dtype
    assert close(y, y_ref, autocast)


def test_pyramid_bottleneck_exports_the_concatenation(monkeypatch):
    (ppm, bottleneck), _ = pyramid_pair(True, dtype=torch.float32)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    monkeypatch.setattr("common.layers.conv_of_resized",
                        lambda *a: pytest.fail("the export must keep torch.cat"))
    with torch.no_grad():
        pyramid_bottleneck(ppm.eval(), bottleneck.eval(), torch.randn(1, 16, 6, 6))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format],
                         ids=["nhwc", "nchw"])
def test_eval_runs_in_the_chosen_layout_with_the_callers_back(layout, monkeypatch):
    monkeypatch.setattr(segmentor, "eval_layout", lambda net, x: layout)
    torch.manual_seed(0)
    net = NETWORKS["BiSeNetV2"]().eval()
    x = torch.randn(1, 3, 64, 96)
    seen = []
    net.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    with torch.no_grad():
        y = net(x)
        y_nhwc = net(x.contiguous(memory_format=torch.channels_last))
        y_plain = net.run(x)
    assert len(seen) == 3 and all(t.is_contiguous(memory_format=layout) for t in seen[:2])
    assert y.is_contiguous() and cc.is_nhwc(y_nhwc)
    assert torch.allclose(y, y_nhwc, atol=1e-5) and torch.allclose(y, y_plain, atol=1e-5)


def test_eval_layout_is_measured_once_per_kind_of_input(monkeypatch):
    net = NETWORKS["ICNet"]().eval()
    calls = []
    real = net.decode_logits
    monkeypatch.setattr(net, "decode_logits", lambda x: calls.append(x) or real(x))
    with torch.no_grad():
        net(torch.randn(1, 3, 64, 64))
        assert len(calls) == 2 + 4 + 1  # a warm-up and two timed calls per format, the call
        assert {cc.is_nhwc(x) for x in calls} == {True, False}
        net(torch.randn(1, 3, 64, 60))  # the same pixel bucket
        assert len(calls) == 8
        net(torch.randn(1, 3, 128, 128))
        assert len(calls) == 8 + 7
    net.train()
    net(torch.randn(2, 3, 64, 64))  # training never measures
    assert len(calls) == 15


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
def test_bf16_weights_give_the_autocast_output_bit_for_bit(model_name, monkeypatch):
    monkeypatch.setattr(segmentor, "eval_layout", lambda net, x: torch.channels_last)  # one
    torch.manual_seed(0)  # layout for both: the claim is about the weights
    net = NETWORKS[model_name]().eval()
    x = torch.randn(1, 3, 64, 128)
    per_call = fast_inference_model(net, True)
    stored = fast_inference_model(copy.deepcopy(net), True, torch.bfloat16)
    convs = [m for m in stored.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.dtype == torch.bfloat16 for m in convs)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(per_call(x), stored(x))


@pytest.mark.parametrize("shape", [(8, 6, 3, 3), (8, 6, 1, 1), (4, 3, 5, 2)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format],
                         ids=["nhwc", "nchw"])
def test_cast_to_is_to_with_memory_format(shape, dtype, layout):
    """cast_to gives what tensor.to(dtype, memory_format=layout) gives: values and strides,
    from a plain tensor and from a slice of one."""
    torch.manual_seed(0)
    for tensor in (torch.randn(shape), torch.randn(shape[0], shape[1] * 2, *shape[2:])[:, 1::2]):
        got, expected = cc.cast_to(tensor, dtype, layout), tensor.to(dtype, memory_format=layout)
        assert got.dtype == dtype and torch.equal(got, expected)
        assert got.stride() == expected.stride()
