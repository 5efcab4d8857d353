"""mmseg's ``EncoderDecoder`` forward, shared by every network.

A subclass sets ``backbone`` (returning a tuple of feature maps), optionally ``neck`` (maps
that tuple to another), ``decode_head`` and
``auxiliary_head`` (one head, or a ModuleList of heads; heads pick their input by
``in_index``). Training mode returns ``{"decode": logits, "aux": ...}`` or
``{"decode": ..., "aux_0": ..., "aux_1": ...}`` at the heads' own strides (the loss resizes them
to the label); eval / export mode returns only the decode logits resized (bilinear) to the
input size, in the input's memory format.

On CPU, eval mode runs the network NHWC (channels_last activations; the weights stay as they
are): oneDNN's convolutions take NHWC as it is, where every NCHW input and output is reordered
to its blocked layout and back. The same function within float rounding, 6-10% faster for all
four models on this project's CPU (eval fp32, 256x512).
"""
import torch
import torch.nn as nn

from common.cpu_conv import is_nhwc
from common.layers import resize


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.neck = None  # a subclass that assigns a module here gets it registered

    def forward(self, x):
        size, memory_format = x.shape[2:], None
        if not self.training and x.device.type == "cpu" and not tracing():
            memory_format = torch.channels_last if is_nhwc(x) else torch.contiguous_format
            x = x.contiguous(memory_format=torch.channels_last)
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        main = self.decode_head(feats)
        if not self.training:
            if memory_format is not None:  # the small logits, not the resized ones
                main = main.contiguous(memory_format=memory_format)
            return resize(main, size)
        if isinstance(self.auxiliary_head, nn.ModuleList):
            aux = {f"aux_{i}": head(feats) for i, head in enumerate(self.auxiliary_head)}
        else:
            aux = {"aux": self.auxiliary_head(feats)}
        return {"decode": main, **aux}


def tracing():
    """Exporting, tracing or compiling: the graph keeps the caller's memory format."""
    return (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
            or torch.compiler.is_compiling())
