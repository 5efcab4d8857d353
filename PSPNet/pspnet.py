"""PSPNet (Zhao et al., CVPR 2017) with mmseg's module tree (``pspnet_r50-d8``).

    image → ResNetV1c-50, deep stem, strides (1,2,1,1), dilations (1,1,2,4): output stride 8
              │ stage 3 (1024 ch)                       │ stage 4 (2048 ch)
        aux FCN head (256 ch, loss 0.4)        PyramidPoolingModule: pool to 1x1, 2x2, 3x3, 6x6,
                                               1x1 conv-bn-relu (512) each, upsample, concat with
                                               the input → 3x3 bottleneck (512) → dropout → classifier

21 classes for PASCAL VOC. In eval mode only the decode logits at input resolution are
returned. The pyramid pooling exports to ONNX exactly at the export resolution (see
``common.layers.adaptive_avg_pool``).
"""
import torch.nn as nn

from common.cpu_conv import Conv2d
from common.layers import ConvModule, FCNHead, PyramidPoolingModule, pyramid_bottleneck
from common.resnet import resnet_v1c
from common.segmentor import EncoderDecoder


class PSPHead(nn.Module):
    """mmseg's PSPHead: PPM, concat with the input, 3x3 bottleneck, dropout, 1x1 classifier."""

    def __init__(self, in_channels=2048, channels=512, num_classes=21, pool_scales=(1, 2, 3, 6),
                 dropout_ratio=0.1, in_index=3):
        super().__init__()
        self.in_index = in_index
        self.conv_seg = Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout_ratio) if dropout_ratio > 0 else None
        self.psp_modules = PyramidPoolingModule(pool_scales, in_channels, channels)
        self.bottleneck = ConvModule(in_channels + len(pool_scales) * channels, channels, 3,
                                     padding=1)

    def forward(self, inputs):
        x = inputs[self.in_index]
        x = pyramid_bottleneck(self.psp_modules, self.bottleneck, x)  # = bottleneck(cat(x, PPM))
        if self.dropout is not None:
            x = self.dropout(x)
        return self.conv_seg(x)


class PSPNet(EncoderDecoder):
    """Dilated ResNetV1c-50 + PSP head + auxiliary FCN head on stage 3."""

    def __init__(self, num_classes=21, dropout_ratio=0.1):
        super().__init__()
        self.backbone = resnet_v1c(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                                   contract_dilation=True)
        self.decode_head = PSPHead(2048, 512, num_classes, dropout_ratio=dropout_ratio)
        self.auxiliary_head = FCNHead(1024, 256, num_classes, num_convs=1, concat_input=False,
                                      dropout_ratio=dropout_ratio, in_index=2)
