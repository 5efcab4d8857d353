"""Building blocks shared by several networks, with mmseg's module names (so state_dict keys
match): ``ConvModule`` (conv -> bn -> act, keys ``conv.*`` / ``bn.*``), ``FCNHead``, and the
``PyramidPoolingModule`` of PSPNet and ICNet (with ONNX-exact adaptive pooling)."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from common.conv_weight_grad import Conv2d


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
        x = self.conv(x)
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
        return [resize(branch(x), x.shape[2:]) for branch in self]
