"""ResNet and ResNetV1c backbones with mmseg's module tree (keys ``conv1``/``bn1`` for the plain
stem, ``stem.{0,1,3,4,6,7}`` for the deep stem, ``layerN.i.{conv,bn}k``, ``downsample.{0,1}``).

``style='pytorch'``: the stride sits on the 3x3 conv. ``dilations`` turn strided stages into
dilated ones (output stride 8 with strides (1,2,1,1) and dilations (1,1,2,4));
``contract_dilation`` halves the first block's dilation in a dilated stage, as mmseg does.
The forward returns the feature map of every stage in ``out_indices``.
"""
import torch.nn as nn

from common.cpu_conv import Conv2d

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3))}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = Conv2d(inplanes, planes, 3, stride, padding=dilation, dilation=dilation,
                            bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity  # in place, as mmseg and torchvision: no new activation-sized tensor
        return self.relu(out)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation,
                            bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


def make_res_layer(block, inplanes, planes, num_blocks, stride, dilation, contract_dilation):
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(
            Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * block.expansion))
    first_dilation = dilation // 2 if (dilation > 1 and contract_dilation) else dilation
    layers = [block(inplanes, planes, stride, first_dilation, downsample)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes, 1, dilation) for _ in range(1, num_blocks)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """mmseg ``ResNet`` (``deep_stem=False``) and ``ResNetV1c`` (``deep_stem=True``)."""

    def __init__(self, depth=50, in_channels=3, stem_channels=64, base_channels=64,
                 strides=(1, 2, 2, 2), dilations=(1, 1, 1, 1), out_indices=(0, 1, 2, 3),
                 deep_stem=False, contract_dilation=False):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth {depth} is not one of {sorted(DEPTHS)}")
        kind, stage_blocks = DEPTHS[depth]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.deep_stem = deep_stem
        self.out_indices = tuple(out_indices)
        if deep_stem:
            half = stem_channels // 2
            self.stem = nn.Sequential(
                Conv2d(in_channels, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                Conv2d(half, half, 3, 1, 1, bias=False), nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
                Conv2d(half, stem_channels, 3, 1, 1, bias=False),
                nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True))
        else:
            self.conv1 = Conv2d(in_channels, stem_channels, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem_channels)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem_channels
        self.res_layers = []
        for i, num_blocks in enumerate(stage_blocks):
            planes = base_channels * 2 ** i
            layer = make_res_layer(block, inplanes, planes, num_blocks, strides[i], dilations[i],
                                   contract_dilation)
            inplanes = planes * block.expansion
            name = f"layer{i + 1}"
            self.add_module(name, layer)
            self.res_layers.append(name)
        self.feat_channels = [base_channels * 2 ** i * block.expansion
                              for i in range(len(stage_blocks))]

    def forward_stem(self, x):
        if self.deep_stem:
            return self.maxpool(self.stem(x))
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x):
        x = self.forward_stem(x)
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)


def resnet_v1c(depth=50, **kwargs):
    """ResNetV1c: deep stem, as used by PSPNet and ICNet (dilated, output stride 8)."""
    return ResNet(depth=depth, deep_stem=True, **kwargs)
