"""ICNet (Zhao et al., ECCV 2018), image cascade network, with mmseg's module tree
(``icnet_r50-d8``).

    image (1/1) ── conv_sub1: three 3x3/2 convs (32, 32, 64) ─────────────── x_sub1 (1/8, 64)
      └ 0.5x ── ResNetV1c-50 stem, maxpool (ceil), layer1, layer2 ─ conv_sub2 ─ x_sub2 (1/16, 256)
                  └ 0.5x ── layer3, layer4 (dilated 2, 4) → pyramid pooling
                             (1, 2, 3, 6; 512) → 3x3 bottleneck ─ conv_sub4 ─ x_sub4 (1/32, 256)
    ICNeck: CascadeFeatureFusion(x_sub4 → x_sub2) → x_24 (1/16), then (→ x_sub1) → x_12, x_cff_12
    FCN decode head (128 ch, no dropout) on x_cff_12 (1/8); auxiliary FCN heads (loss weight
    0.4, "label guidance") on x_24 (1/16) and x_12 (1/8), training only.
"""
import torch.nn as nn
import torch.nn.functional as F

from common.layers import ConvModule, FCNHead, PyramidPoolingModule, pyramid_bottleneck, resize
from common.resnet import resnet_v1c
from common.segmentor import EncoderDecoder


def half(x):
    """Bilinear 0.5x by scale factor, as mmseg's ICNet does (differs from a size-based resize
    on odd sizes)."""
    return F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)


class ICNetBackbone(nn.Module):
    """The three branches: light full-resolution convs, half-resolution ResNet to stage 2,
    quarter-resolution ResNet stages 3-4 with pyramid pooling. Returns (sub1, sub2, sub4)."""

    def __init__(self, in_channels=3, layer_channels=(512, 2048), light_channels=32,
                 psp_channels=512, out_channels=(64, 256, 256), pool_scales=(1, 2, 3, 6)):
        super().__init__()
        self.backbone = resnet_v1c(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                                   contract_dilation=True)
        self.backbone.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        self.psp_modules = PyramidPoolingModule(pool_scales, layer_channels[1], psp_channels)
        self.psp_bottleneck = ConvModule(layer_channels[1] + len(pool_scales) * psp_channels,
                                         psp_channels, 3, padding=1)
        self.conv_sub1 = nn.Sequential(
            ConvModule(in_channels, light_channels, 3, stride=2, padding=1),
            ConvModule(light_channels, light_channels, 3, stride=2, padding=1),
            ConvModule(light_channels, out_channels[0], 3, stride=2, padding=1))
        self.conv_sub2 = ConvModule(layer_channels[0], out_channels[1], 1)
        self.conv_sub4 = ConvModule(psp_channels, out_channels[2], 1)

    def forward(self, x):
        sub1 = self.conv_sub1(x)
        r = self.backbone
        x = r.layer2(r.layer1(r.maxpool(r.stem(half(x)))))
        sub2 = self.conv_sub2(x)
        x = r.layer4(r.layer3(half(x)))
        x = pyramid_bottleneck(self.psp_modules, self.psp_bottleneck, x, x_first=False)
        return sub1, sub2, self.conv_sub4(x)


class CascadeFeatureFusion(nn.Module):
    """Upsample the coarse branch to the fine one, dilated 3x3 conv on it, 1x1 conv on the fine
    one, sum, ReLU. Also returns the upsampled coarse features (for label guidance)."""

    def __init__(self, low_channels, high_channels, out_channels):
        super().__init__()
        self.conv_low = ConvModule(low_channels, out_channels, 3, padding=2, dilation=2)
        self.conv_high = ConvModule(high_channels, out_channels, 1)

    def forward(self, x_low, x_high):
        x_low = self.conv_low(resize(x_low, x_high.shape[2:]))
        return F.relu(x_low + self.conv_high(x_high), inplace=True), x_low


class ICNeck(nn.Module):
    """Two cascade feature fusions: 1/32 into 1/16, then into 1/8."""

    def __init__(self, in_channels=(64, 256, 256), out_channels=128):
        super().__init__()
        self.cff_24 = CascadeFeatureFusion(in_channels[2], in_channels[1], out_channels)
        self.cff_12 = CascadeFeatureFusion(out_channels, in_channels[0], out_channels)

    def forward(self, inputs):
        x_sub1, x_sub2, x_sub4 = inputs
        x_cff_24, x_24 = self.cff_24(x_sub4, x_sub2)
        x_cff_12, x_12 = self.cff_12(x_cff_24, x_sub1)
        return x_24, x_12, x_cff_12


class ICNet(EncoderDecoder):
    def __init__(self, num_classes=19, aux_dropout_ratio=0.1):
        super().__init__()
        self.backbone = ICNetBackbone()
        self.neck = ICNeck()
        self.decode_head = FCNHead(128, 128, num_classes, num_convs=1, concat_input=False,
                                   dropout_ratio=0, in_index=2)
        self.auxiliary_head = nn.ModuleList([
            FCNHead(128, 128, num_classes, num_convs=1, concat_input=False,
                    dropout_ratio=aux_dropout_ratio, in_index=i) for i in (0, 1)])
