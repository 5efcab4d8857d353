"""``Conv2d``: nn.Conv2d whose weight gradient on CPU is computed by im2col + one GEMM where
that is measured faster than oneDNN's backward-weights kernel.

oneDNN's kernel is slow when few output pixels (batch x height x width) meet a large weight
or a large dilation: ICNet's 4096->512 3x3 PSP bottleneck at 8x8 (256x256 crops) takes
88 ms in bf16 on this project's CPU, the same product as one GEMM of (512 x 128) by
(128 x 36864) takes 13 ms; its layer-4 3x3 convs with dilation 4 take 17 ms against 3 ms.
With many output pixels oneDNN wins by far. So the choice is measured, once per convolution
shape, dtype and layout, on the machine that trains (both algorithms timed on the first
step), and only tried where the batch has at most ``MAX_PIXELS`` output pixels. Everything
else is nn.Conv2d: the forward pass, the input gradient, eval mode, export, other devices,
``torch.compile`` and deterministic runs (which keep oneDNN, so that runs repeat bit for
bit). State-dict keys are nn.Conv2d's.
"""
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_PIXELS = 1024  # above this many output pixels per batch the GEMM lost on every shape tried
_CHOICES = {}  # (shapes, conv arguments, dtype, layout) -> True when the GEMM is faster


def patches(x, conv, channels_last):
    """im2col: (batch x out_h x out_w, patch) for ``x`` (N, C, H, W) in any memory format, one
    copy of the input's patches. A patch is ordered (kh, kw, C) when ``channels_last``, else
    (C, kh, kw): the order of the weight's memory layout."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (conv.kernel_size, conv.stride, conv.padding,
                                              conv.dilation)
    padded = F.pad(x.permute(0, 2, 3, 1), (0, 0, pw, pw, ph, ph))  # N, H, W, C
    n, h, w, c = padded.shape
    out_h, out_w = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    s_n, s_h, s_w, s_c = padded.stride()
    sizes, strides = (kh, kw, c), (s_h * dh, s_w * dw, s_c)
    if not channels_last:
        sizes, strides = (c, kh, kw), (s_c, s_h * dh, s_w * dw)
    view = padded.as_strided((n, out_h, out_w, *sizes), (s_n, s_h * sh, s_w * sw, *strides))
    return view.reshape(n * out_h * out_w, kh * kw * c)


def gemm_weight_grad(grad_out, x, conv):
    """d(loss)/d(weight) of ``conv`` (groups 1) as one GEMM of the output gradient by the
    input's patches, in the dtype of ``x``, shape (out, in, kh, kw), laid out in memory as
    the weight is (so that the copy into its gradient, if any, is a plain cast)."""
    out_c, in_c, kh, kw = conv.weight.shape
    channels_last = conv.weight.is_contiguous(memory_format=torch.channels_last) and (
        not conv.weight.is_contiguous())  # a 1x1 weight is both; the plain order serves it
    grad = grad_out.transpose(0, 1).reshape(out_c, -1)  # out, N x out_h x out_w
    product = grad @ patches(x, conv, channels_last)
    if channels_last:
        return product.view(out_c, kh, kw, in_c).permute(0, 3, 1, 2)
    return product.view(out_c, in_c, kh, kw)


def onednn_weight_grad(grad_out, x, weight, conv):
    return torch.ops.aten.convolution_backward(
        grad_out, x, weight, None, list(conv.stride), list(conv.padding), list(conv.dilation),
        False, [0, 0], 1, [False, True, False])[1]


def _seconds(fn, repeats=2):
    fn()  # first call: allocation and oneDNN primitive creation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_is_faster(x, conv):
    """Times both weight-gradient algorithms of ``conv`` on tensors of the step's shapes in
    ``x``'s dtype (constant values: the global RNG is not touched); cached per shape, so each
    is measured once per process."""
    key = (tuple(x.shape), tuple(conv.weight.shape), conv.stride, conv.padding, conv.dilation,
           x.dtype, x.is_contiguous(memory_format=torch.channels_last))
    if key not in _CHOICES:
        with torch.no_grad():
            weight = conv.weight.to(x.dtype)
            out = F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation)
            grad_out = torch.ones_like(out)
            gemm = _seconds(lambda: gemm_weight_grad(grad_out, x, conv))
            onednn = _seconds(lambda: onednn_weight_grad(grad_out, x, weight, conv))
        _CHOICES[key] = gemm < 0.8 * onednn  # a clear win only: timings are noisy
    return _CHOICES[key]


class _GemmWeightGradConv(torch.autograd.Function):
    """conv2d in ``dtype`` whose backward takes the weight gradient from
    :func:`gemm_weight_grad`. ``x`` comes in ``dtype`` already; the parameters come as they
    are stored, and their gradients go back in their own dtype and memory format in one copy
    (through autograd's casts they would take two or three passes over the weight)."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv, dtype):
        weight_c = weight.to(dtype)
        bias_c = bias.to(dtype) if bias is not None else None
        ctx.conv = conv
        ctx.save_for_backward(x, weight_c)
        ctx.weight_like = torch.empty_like(weight, device="meta")
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight_c, bias_c, conv.stride, conv.padding, conv.dilation)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight_c = ctx.saved_tensors
        conv = ctx.conv
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out, x, weight_c, None, list(conv.stride), list(conv.padding),
                list(conv.dilation), False, [0, 0], 1, [True, False, False])[0]
        grad_weight = gemm_weight_grad(grad_out, x, conv)
        like = ctx.weight_like
        if grad_weight.dtype != like.dtype or grad_weight.stride() != like.stride():
            grad_weight = torch.empty_like(like, device=grad_out.device).copy_(grad_weight)
        if ctx.has_bias:
            grad_bias = grad_out.sum((0, 2, 3), dtype=torch.float32)
        return grad_x, grad_weight, grad_bias, None, None


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same arguments and parameters); see the module docstring."""

    def _conv_forward(self, x, weight, bias):
        if not self._may_use_gemm(x, weight):
            return super()._conv_forward(x, weight, bias)
        dtype = (torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu")
                 else weight.dtype)
        x = x.to(dtype)  # what autocast would hand the convolution
        if not gemm_is_faster(x, self):
            return super()._conv_forward(x, weight, bias)
        return _GemmWeightGradConv.apply(x, weight, bias, self, dtype)

    def _may_use_gemm(self, x, weight):
        if not (self.training and torch.is_grad_enabled() and weight.requires_grad
                and x.device.type == "cpu" and x.dim() == 4 and self.groups == 1
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)):
            return False
        if torch.compiler.is_compiling() or torch.are_deterministic_algorithms_enabled():
            return False
        out_h = (x.shape[2] + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1)
                 - 1) // self.stride[0] + 1
        out_w = (x.shape[3] + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1)
                 - 1) // self.stride[1] + 1
        return x.shape[0] * out_h * out_w <= MAX_PIXELS
