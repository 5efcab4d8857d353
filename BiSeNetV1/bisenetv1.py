"""BiSeNetV1 (Yu et al., ECCV 2018) with mmseg's module tree.

    image ─┬─ SpatialPath (3 strided convs, 1/8) ────────────────┐
           └─ ContextPath: ResNet → ARM(1/32)+GAP → up → ARM(1/16) → up ─┴─ FeatureFusionModule
                                                                     │          │
                                         aux heads on context 1/8, 1/16     FCN decode head (1/8)

Two reference configs: R50-D32 (``bisenetv1_r50-d32``: context (512,1024,2048), spatial
(256,256,256,512), fusion 1024) and R18-D32 (context (128,256,512), spatial (64,64,64,128),
fusion 256). In eval mode the network returns only the decode logits at input resolution.
"""
import torch
import torch.nn as nn

from common.layers import ConvModule, FCNHead, resize
from common.resnet import ResNet
from common.segmentor import EncoderDecoder

VARIANTS = {
    50: dict(context_channels=(512, 1024, 2048), spatial_channels=(256, 256, 256, 512),
             out_channels=1024, aux_channels=256),
    18: dict(context_channels=(128, 256, 512), spatial_channels=(64, 64, 64, 128),
             out_channels=256, aux_channels=64),
}


class SpatialPath(nn.Module):
    """7x7/2, 3x3/2, 3x3/2 then 1x1: a wide, shallow 1/8-resolution path keeping detail."""

    def __init__(self, in_channels, channels):
        super().__init__()
        c1, c2, c3, c4 = channels
        self.layer1 = ConvModule(in_channels, c1, 7, stride=2, padding=3)
        self.layer2 = ConvModule(c1, c2, 3, stride=2, padding=1)
        self.layer3 = ConvModule(c2, c3, 3, stride=2, padding=1)
        self.layer4 = ConvModule(c3, c4, 1)

    def forward(self, x):
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class AttentionRefinementModule(nn.Module):
    """3x3 conv, then channel attention from global pooling (1x1 conv-bn, sigmoid)."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv_layer = ConvModule(in_channels, out_channels, 3, padding=1)
        self.atten_conv_layer = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            ConvModule(out_channels, out_channels, 1, bias=False, act=False),
            nn.Sigmoid())

    def forward(self, x):
        x = self.conv_layer(x)
        return x * self.atten_conv_layer(x)


class ContextPath(nn.Module):
    """ResNet features at 1/16 and 1/32, refined by ARMs plus a global-context vector, then
    upsampled (nearest) stage by stage. Returns (context at 1/8, context at 1/16)."""

    def __init__(self, depth, context_channels):
        super().__init__()
        c8, c16, c32 = context_channels
        self.backbone = ResNet(depth=depth, strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1),
                               contract_dilation=True)
        self.arm16 = AttentionRefinementModule(c16, c8)
        self.arm32 = AttentionRefinementModule(c32, c8)
        self.conv_head32 = ConvModule(c8, c8, 3, padding=1)
        self.conv_head16 = ConvModule(c8, c8, 3, padding=1)
        self.gap_conv = nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), ConvModule(c32, c8, 1))

    def forward(self, x):
        _, x_8, x_16, x_32 = self.backbone(x)
        x_32_sum = self.arm32(x_32) + self.gap_conv(x_32)
        x_32_up = self.conv_head32(resize(x_32_sum, x_16.shape[2:], mode="nearest"))
        x_16_sum = self.arm16(x_16) + x_32_up
        x_16_up = self.conv_head16(resize(x_16_sum, x_8.shape[2:], mode="nearest"))
        return x_16_up, x_32_up


class FeatureFusionModule(nn.Module):
    """Concatenate spatial and context features, 1x1 conv, SE-style channel re-weighting."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = ConvModule(in_channels, out_channels, 1)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_atten = nn.Sequential(ConvModule(out_channels, out_channels, 1, bias=False),
                                        nn.Sigmoid())

    def forward(self, x_sp, x_cp):
        x_fuse = self.conv1(torch.cat([x_sp, x_cp], dim=1))
        return x_fuse * self.conv_atten(self.gap(x_fuse)) + x_fuse


class BiSeNetV1Backbone(nn.Module):
    """mmseg's ``BiSeNetV1`` backbone: returns (fused 1/8, context 1/8, context 1/16)."""

    def __init__(self, depth, context_channels, spatial_channels, out_channels, in_channels=3):
        super().__init__()
        self.context_path = ContextPath(depth, context_channels)
        self.spatial_path = SpatialPath(in_channels, spatial_channels)
        self.ffm = FeatureFusionModule(context_channels[1], out_channels)

    def forward(self, x):
        x_context8, x_context16 = self.context_path(x)
        x_fuse = self.ffm(self.spatial_path(x), x_context8)
        return x_fuse, x_context8, x_context16


class BiSeNetV1(EncoderDecoder):
    """Backbone + FCN decode head (+ two FCN auxiliary heads used in training only)."""

    def __init__(self, depth=50, num_classes=19, dropout_ratio=0.1):
        super().__init__()
        if depth not in VARIANTS:
            raise ValueError(f"BiSeNetV1 depth must be one of {sorted(VARIANTS)}, got {depth}")
        v = VARIANTS[depth]
        self.backbone = BiSeNetV1Backbone(depth, v["context_channels"], v["spatial_channels"],
                                          v["out_channels"])
        self.decode_head = FCNHead(v["out_channels"], v["out_channels"], num_classes,
                                   num_convs=1, concat_input=False, dropout_ratio=dropout_ratio,
                                   in_index=0)
        c8 = v["context_channels"][0]
        self.auxiliary_head = nn.ModuleList([
            FCNHead(c8, v["aux_channels"], num_classes, num_convs=1, concat_input=False,
                    dropout_ratio=dropout_ratio, in_index=i) for i in (1, 2)])
