"""BiSeNetV2 (Yu et al., IJCV 2021) with mmseg's module tree (``bisenetv2_fcn``).

    image ─┬─ DetailBranch: 3 stages of 3x3 convs, channels (64, 64, 128) ──── 1/8 ──┐
           └─ SemanticBranch: StemBlock(16) → GE stages (32, 64, 128) → CEBlock      ├─ BGALayer(128)
                 1/4      1/8      1/16      1/32 (context embedded) ────────────────┘      │
                  │        │         │          │                                  FCN decode head
              aux FCN heads (16, 64, 256, 1024 channels, two convs each; training only)  (1024 ch)

Gather-and-expansion (GE) layers expand channels 6x with depthwise convs; the stride-2 ones
add a depthwise-separable shortcut. In eval mode only the decode logits, resized to the input,
are returned.
"""
import torch
import torch.nn as nn

from common.layers import ConvModule, FCNHead, resize
from common.segmentor import EncoderDecoder


class DepthwiseSeparableConvModule(nn.Module):
    """Depthwise 3x3 conv(-bn) then pointwise 1x1 conv(-bn); activations as configured."""

    def __init__(self, in_channels, out_channels, stride=1, dw_act=False, pw_norm=True,
                 pw_act=False):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, 3, stride, padding=1,
                                         groups=in_channels, act=dw_act)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1, norm=pw_norm,
                                         act=pw_act)

    def forward(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class DetailBranch(nn.Module):
    """Wide and shallow: (3x3/2, 3x3) then twice (3x3/2, 3x3, 3x3); output at 1/8."""

    def __init__(self, channels=(64, 64, 128), in_channels=3):
        super().__init__()
        stages = []
        for i, c in enumerate(channels):
            prev = in_channels if i == 0 else channels[i - 1]
            convs = [ConvModule(prev, c, 3, stride=2, padding=1)]
            convs += [ConvModule(c, c, 3, padding=1) for _ in range(1 if i == 0 else 2)]
            stages.append(nn.Sequential(*convs))
        self.detail_branch = nn.ModuleList(stages)

    def forward(self, x):
        for stage in self.detail_branch:
            x = stage(x)
        return x


class StemBlock(nn.Module):
    """3x3/2, then a conv path (1x1, 3x3/2) and a max-pool path, concatenated and fused: 1/4."""

    def __init__(self, in_channels=3, out_channels=16):
        super().__init__()
        self.conv_first = ConvModule(in_channels, out_channels, 3, stride=2, padding=1)
        self.convs = nn.Sequential(
            ConvModule(out_channels, out_channels // 2, 1),
            ConvModule(out_channels // 2, out_channels, 3, stride=2, padding=1))
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.fuse_last = ConvModule(out_channels * 2, out_channels, 3, padding=1)

    def forward(self, x):
        x = self.conv_first(x)
        return self.fuse_last(torch.cat([self.convs(x), self.pool(x)], dim=1))


class GELayer(nn.Module):
    """Gather-and-expansion: 3x3 conv, depthwise expansion (x6; stride 2 adds a second
    depthwise conv and a separable shortcut), 1x1 projection, residual, ReLU."""

    def __init__(self, in_channels, out_channels, exp_ratio=6, stride=1):
        super().__init__()
        mid = in_channels * exp_ratio
        self.conv1 = ConvModule(in_channels, in_channels, 3, padding=1)
        if stride == 1:
            self.dwconv = nn.Sequential(
                ConvModule(in_channels, mid, 3, padding=1, groups=in_channels))
            self.shortcut = None
        else:
            self.dwconv = nn.Sequential(
                ConvModule(in_channels, mid, 3, stride, padding=1, groups=in_channels,
                           act=False),
                ConvModule(mid, mid, 3, padding=1, groups=mid))
            self.shortcut = nn.Sequential(
                DepthwiseSeparableConvModule(in_channels, out_channels, stride))
        self.conv2 = nn.Sequential(ConvModule(mid, out_channels, 1, act=False))
        self.act = nn.ReLU()

    def forward(self, x):
        out = self.conv2(self.dwconv(self.conv1(x)))  # a BN output (no activation): may change
        out += x if self.shortcut is None else self.shortcut(x)
        return self.act(out)


class CEBlock(nn.Module):
    """Context embedding: global average pool -> BN -> 1x1 conv, added back, then 3x3 conv."""

    def __init__(self, in_channels=128, out_channels=128):
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), nn.BatchNorm2d(in_channels))
        self.conv_gap = ConvModule(in_channels, out_channels, 1)
        self.conv_last = ConvModule(out_channels, out_channels, 3, padding=1)

    def forward(self, x):
        return self.conv_last(x + self.conv_gap(self.gap(x)))


class SemanticBranch(nn.Module):
    """Narrow and deep: stem (1/4), GE stages (1/8, 1/16, 1/32), context embedding.
    Returns the output of every stage (the auxiliary heads read the first four)."""

    def __init__(self, channels=(16, 32, 64, 128), in_channels=3, exp_ratio=6):
        super().__init__()
        self.stage_names = []
        for i, c in enumerate(channels):
            name = f"stage{i + 1}"
            if i == 0:
                stage = StemBlock(in_channels, c)
            else:
                repeats = 4 if i == len(channels) - 1 else 2
                stage = nn.Sequential(GELayer(channels[i - 1], c, exp_ratio, 2),
                                      *[GELayer(c, c, exp_ratio, 1) for _ in range(repeats - 1)])
            self.add_module(name, stage)
            self.stage_names.append(name)
        name = f"stage{len(channels)}_CEBlock"
        self.add_module(name, CEBlock(channels[-1], channels[-1]))
        self.stage_names.append(name)

    def forward(self, x):
        outs = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            outs.append(x)
        return outs


class BGALayer(nn.Module):
    """Bilateral guided aggregation: each branch gates the other (sigmoid), at the detail
    resolution and at 1/4 of it, then the two are summed and fused by a 3x3 conv."""

    def __init__(self, channels=128):
        super().__init__()
        self.detail_dwconv = nn.Sequential(
            DepthwiseSeparableConvModule(channels, channels, pw_norm=False))
        self.detail_down = nn.Sequential(
            ConvModule(channels, channels, 3, stride=2, padding=1, bias=False, act=False),
            nn.AvgPool2d(kernel_size=3, stride=2, padding=1))
        self.semantic_conv = nn.Sequential(
            ConvModule(channels, channels, 3, padding=1, bias=False, act=False))
        self.semantic_dwconv = nn.Sequential(
            DepthwiseSeparableConvModule(channels, channels, pw_norm=False))
        self.conv = ConvModule(channels, channels, 3, padding=1)

    def forward(self, x_d, x_s):
        detail_dwconv = self.detail_dwconv(x_d)
        detail_down = self.detail_down(x_d)
        semantic_conv = resize(self.semantic_conv(x_s), detail_dwconv.shape[2:])
        fuse_1 = detail_dwconv * torch.sigmoid(semantic_conv)
        fuse_2 = detail_down * torch.sigmoid(self.semantic_dwconv(x_s))
        return self.conv(fuse_1 + resize(fuse_2, fuse_1.shape[2:]))


class BiSeNetV2Backbone(nn.Module):
    """mmseg's ``BiSeNetV2`` backbone: (BGA output, semantic stages 1..4)."""

    def __init__(self, detail_channels=(64, 64, 128), semantic_channels=(16, 32, 64, 128),
                 exp_ratio=6, bga_channels=128, in_channels=3):
        super().__init__()
        self.detail = DetailBranch(detail_channels, in_channels)
        self.semantic = SemanticBranch(semantic_channels, in_channels, exp_ratio)
        self.bga = BGALayer(bga_channels)

    def forward(self, x):
        semantic = self.semantic(x)
        return (self.bga(self.detail(x), semantic[-1]), *semantic[:-1])


AUX_CHANNELS = (16, 64, 256, 1024)


class BiSeNetV2(EncoderDecoder):
    """Backbone + FCN decode head (1024 channels) + four auxiliary FCN heads."""

    def __init__(self, num_classes=19, dropout_ratio=0.1):
        super().__init__()
        self.backbone = BiSeNetV2Backbone()
        self.decode_head = FCNHead(128, 1024, num_classes, num_convs=1, concat_input=False,
                                   dropout_ratio=dropout_ratio, in_index=0)
        self.auxiliary_head = nn.ModuleList([
            FCNHead(c_in, c, num_classes, num_convs=2, concat_input=False,
                    dropout_ratio=dropout_ratio, in_index=i + 1)
            for i, (c_in, c) in enumerate(zip((16, 32, 64, 128), AUX_CHANNELS))])
