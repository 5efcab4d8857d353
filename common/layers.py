"""Building blocks shared by several networks, with mmseg's module names (so state_dict keys
match): ``ConvModule`` (conv -> bn -> act, keys ``conv.*`` / ``bn.*``), ``FCNHead``, and the
``PyramidPoolingModule`` of PSPNet and ICNet (with ONNX-exact adaptive pooling) and
:func:`pyramid_bottleneck`, their bottleneck over it without convolving the upsampled maps."""
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from common.cpu_conv import Conv2d, cast_to, derived_weight, is_nhwc


def resize(x, size, mode="bilinear"):
    """Resize a feature map; bilinear never aligns corners (mmseg's align_corners=False)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


def _bin_matrix(in_size, out_size, dtype, device):
    """(out, in) matrix averaging adaptive-pooling bins [floor(i*in/out), ceil((i+1)*in/out)).
    Tensor ops on the (traced) input size: a static export folds them into constants, a
    dynamic one keeps them in the graph, so the pooling is exact at every input size."""
    i = torch.arange(out_size, device=device)
    j = torch.arange(in_size, device=device)
    start = torch.div(i * in_size, out_size, rounding_mode="floor")
    end = torch.div((i + 1) * in_size + out_size - 1, out_size, rounding_mode="floor")
    inside = (j[None, :] >= start[:, None]) & (j[None, :] < end[:, None])
    return inside.to(dtype) / (end - start)[:, None].to(dtype)


def adaptive_avg_pool(x, output_size):
    """``F.adaptive_avg_pool2d``, except while exporting to ONNX, where it becomes two
    matrix products with the exact bin-averaging matrices (opset 11 has no adaptive pooling,
    and replacing it with a fixed AveragePool changes the output)."""
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(x, (out_h, out_w))
    rows = _bin_matrix(x.shape[-2], out_h, x.dtype, x.device)       # out_h x H
    cols = _bin_matrix(x.shape[-1], out_w, x.dtype, x.device).t()   # W x out_w
    return torch.matmul(torch.matmul(rows, x), cols)


class AdaptiveAvgPool(nn.Module):
    """Module form of :func:`adaptive_avg_pool` (no parameters, so state_dicts are unchanged)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return adaptive_avg_pool(x, self.output_size)


class ConvModule(nn.Module):
    """Conv2d -> BatchNorm2d -> activation. The conv has no bias when a norm follows it."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, norm=True, act=True, bias="auto"):
        super().__init__()
        use_bias = (not norm) if bias == "auto" else bias
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                           groups, bias=use_bias)
        if norm:
            self.bn = nn.BatchNorm2d(out_channels)
        self.activate = nn.ReLU(inplace=True) if act else None

    def forward(self, x):
        return self._norm_act(self.conv(x))

    def after_conv(self, x):
        """The norm and activation for a convolution output computed outside ``self.conv``
        (as :func:`pyramid_bottleneck` does), including a ReLU that
        :func:`common.fuse.fold_relu` moved into the convolution."""
        x = self._norm_act(x)
        return F.relu(x, inplace=True) if self.conv.fused_relu else x

    def _norm_act(self, x):
        if hasattr(self, "bn"):
            x = self.bn(x)
        if self.activate is not None:
            x = self.activate(x)
        return x


class FCNHead(nn.Module):
    """mmseg's FCNHead: ``num_convs`` conv-bn-relu, optional concat of the input, dropout,
    1x1 classifier ``conv_seg``. ``in_index`` picks one feature map from the backbone's tuple."""

    def __init__(self, in_channels, channels, num_classes, num_convs=2, kernel_size=3,
                 dilation=1, concat_input=True, dropout_ratio=0.1, in_index=-1):
        super().__init__()
        self.in_index = in_index
        # conv_seg and dropout are created first, as in mmseg, so state_dict order matches too.
        self.conv_seg = Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        padding = (kernel_size // 2) * dilation
        if num_convs == 0:
            if in_channels != channels:
                raise ValueError("FCNHead with num_convs=0 needs in_channels == channels")
            self.convs = nn.Identity()
        else:
            self.convs = nn.Sequential(*[
                ConvModule(in_channels if i == 0 else channels, channels, kernel_size,
                           padding=padding, dilation=dilation)
                for i in range(num_convs)])
        self.conv_cat = (ConvModule(in_channels + channels, channels, kernel_size,
                                    padding=kernel_size // 2) if concat_input else None)

    def forward(self, inputs):
        x = inputs[self.in_index] if isinstance(inputs, (list, tuple)) else inputs
        feats = self.convs(x)
        if self.conv_cat is not None:
            feats = self.conv_cat(torch.cat([x, feats], dim=1))
        if self.dropout is not None:
            feats = self.dropout(feats)
        return self.conv_seg(feats)


class PyramidPoolingModule(nn.ModuleList):
    """One branch per pool scale: adaptive average pool then 1x1 conv-bn-relu; each output is
    upsampled (bilinear) back to the input size."""

    def __init__(self, pool_scales, in_channels, channels):
        super().__init__(nn.Sequential(AdaptiveAvgPool(scale), ConvModule(in_channels, channels, 1))
                         for scale in pool_scales)

    def forward(self, x):
        return [resize(p, x.shape[2:]) for p in self.pooled(x)]

    def pooled(self, x):
        """The branches' outputs before upsampling (scale x scale each)."""
        return [branch(x) for branch in self]


def pyramid_bottleneck(ppm, bottleneck, x, x_first=True):
    """``bottleneck(cat([x, *ppm(x)]))`` (``x_first=False``: the pyramid first, as ICNet
    concatenates), without convolving the upsampled pyramid maps.

    Convolution and bilinear upsampling are both linear, so the bottleneck's convolution over
    the concatenation is its convolution over ``x`` with that slice of the weight, plus, for
    each pooled map p (1..6 pixels a side), :func:`conv_of_resized`: the same sum in another
    order, at a tiny share of the cost (the pyramid is half of PSPNet's 4096 input channels,
    so half of the bottleneck's FLOPs go). The result equals the concatenation's within float
    rounding (tested); ONNX export keeps the plain concatenation, the portable graph."""
    conv = bottleneck.conv
    if (torch.onnx.is_in_onnx_export() or tuple(conv.stride) != (1, 1) or conv.groups != 1
            or conv.padding_mode != "zeros" or isinstance(conv.padding, str)):
        maps = [x, *ppm(x)] if x_first else [*ppm(x), x]
        return bottleneck(torch.cat(maps, dim=1))
    pooled = ppm.pooled(x)
    sizes = [p.shape[1] for p in pooled]
    sizes = [x.shape[1], *sizes] if x_first else [*sizes, x.shape[1]]
    x_at = 0 if x_first else len(sizes) - 1
    device = x.device.type
    rounding = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
    if torch.is_grad_enabled() and conv.weight.requires_grad:
        layout = torch.channels_last if is_nhwc(x) else torch.contiguous_format
        weights = list(WeightSlices.apply(conv.weight, tuple(sizes), x_at, rounding, layout))
    else:
        weights = [w if i == x_at else derived_weight(conv, ("pyramid", i, rounding), w,
                                                       lambda w: channel_major(w, rounding))
                   for i, w in enumerate(torch.split(conv.weight, sizes, dim=1))]
    x_weight = weights.pop(x_at)
    out = conv._conv_forward(x, x_weight, conv.bias)  # nn.Conv2d's hook: ours picks the algorithm
    for p, weight in zip(pooled, weights):
        out = out + conv_of_resized(p, weight, conv, x.shape[2:], is_nhwc(out)).to(out.dtype)
    return bottleneck.after_conv(out)


def channel_major(weight, rounding=None):
    """(in, out, kh, kw), contiguous: the contraction over input channels becomes one plain
    matrix product. In ``rounding`` (the autocast dtype the concatenation's convolution would
    compute in) if given, else float32 (float64 stays). Cast first, then transposed: the
    transposing copy moves runs of kh x kw elements, half as many bytes in bf16 (1.6 against
    2.7 ms for a 512x512x3x3 slice to bf16 on this project's CPU)."""
    dtype = rounding or (torch.float64 if weight.dtype == torch.float64 else torch.float32)
    return weight.to(dtype).transpose(0, 1).contiguous()


class WeightSlices(torch.autograd.Function):
    """Training form of the bottleneck weight's split for :func:`pyramid_bottleneck`: the
    slices along input channels (``sizes``), each made ready in one copy, the one at ``x_at``
    in the input's dtype under autocast (``rounding``, what autocast would cast it to) and
    ``layout``, the others :func:`channel_major`. The backward writes each slice's gradient
    straight into one gradient for the whole weight (cast and laid out in the same copy);
    through ``torch.split`` each slice's gradient is first cast back on its own and then
    concatenated, two more passes over the 19M-element weight of PSPNet's and ICNet's
    bottleneck."""

    @staticmethod
    def forward(ctx, weight, sizes, x_at, rounding, layout):
        ctx.sizes, ctx.x_at, ctx.shape, ctx.dtype = sizes, x_at, weight.shape, weight.dtype
        slices = torch.split(weight, list(sizes), dim=1)
        return tuple(channel_major(w, rounding) if i != x_at
                     else cast_to(w, rounding or w.dtype, layout)
                     for i, w in enumerate(slices))

    @staticmethod
    def backward(ctx, *grads):
        full = torch.empty(ctx.shape, dtype=ctx.dtype, device=grads[ctx.x_at].device)
        for i, (part, grad) in enumerate(zip(torch.split(full, list(ctx.sizes), dim=1), grads)):
            part.copy_(grad if i == ctx.x_at else grad.transpose(0, 1))  # unused slices: zeros
        return full, None, None, None, None


@functools.lru_cache(maxsize=64)
def shifted_resize_matrices(out_size, in_size, kernel, dilation, padding, dtype, device):
    """(kernel, out_size, in_size): for each kernel tap t, row y holds the weights with
    which a bilinear resize (align_corners=False, as :func:`resize`) from ``in_size`` to
    ``out_size`` makes output pixel y + t * dilation - padding (zeros outside the image: the
    convolution's zero padding)."""
    dst = torch.arange(out_size, dtype=torch.float64)
    src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0)
    low = src.floor().long().clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    frac = src - low
    padded = torch.zeros(out_size + 2 * padding + kernel * dilation, in_size, dtype=torch.float64)
    rows = dst.long() + padding
    padded[rows, low] += 1 - frac
    padded[rows, high] += frac
    taps = [padded[t * dilation:t * dilation + out_size] for t in range(kernel)]
    return torch.stack(taps).to(device=device, dtype=dtype)


def conv_of_resized(p, taps, conv, size, channels_last):
    """``F.conv2d(resize(p, size), weight)`` with ``conv``'s padding and dilation (stride 1,
    no bias), ``taps`` the weight as :func:`channel_major` gives it, computed on ``p`` itself:
    q = weight x p for every kernel tap (channels contracted at p's few pixels; in the dtype
    of ``taps``), then each tap's shifted bilinear resize, rows then columns, summed over taps
    (float32; float64 for float64). Returned NHWC-strided if ``channels_last``."""
    (kh, kw), (ph, pw), (dh, dw) = conv.kernel_size, conv.padding, conv.dilation
    dtype = torch.float64 if taps.dtype == torch.float64 else torch.float32
    rows = shifted_resize_matrices(size[0], p.shape[2], kh, dh, ph, dtype, p.device)
    cols = shifted_resize_matrices(size[1], p.shape[3], kw, dw, pw, dtype, p.device)
    with torch.autocast(p.device.type, enabled=False):
        q = torch.einsum("ncij,coab->noabij", p.to(taps.dtype), taps).to(dtype)
        q = torch.einsum("noabij,ayi->nobyj", q, rows)
        if channels_last:
            return torch.einsum("nobyj,bxj->nyxo", q, cols).permute(0, 3, 1, 2)
        return torch.einsum("nobyj,bxj->noyx", q, cols)
