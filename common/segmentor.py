"""mmseg's ``EncoderDecoder`` forward, shared by every network.

A subclass sets ``backbone`` (returning a tuple of feature maps), optionally ``neck`` (maps
that tuple to another), ``decode_head`` and
``auxiliary_head`` (one head, or a ModuleList of heads; heads pick their input by
``in_index``). Training mode returns ``{"decode": logits, "aux": ...}`` or
``{"decode": ..., "aux_0": ..., "aux_1": ...}`` at the heads' own strides (the loss resizes them
to the label); eval / export mode returns only the decode logits resized (bilinear) to the
input size.
"""
import torch.nn as nn

from common.layers import resize


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.neck = None  # a subclass that assigns a module here gets it registered

    def forward(self, x):
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        main = self.decode_head(feats)
        if not self.training:
            return resize(main, x.shape[2:])
        if isinstance(self.auxiliary_head, nn.ModuleList):
            aux = {f"aux_{i}": head(feats) for i, head in enumerate(self.auxiliary_head)}
        else:
            aux = {"aux": self.auxiliary_head(feats)}
        return {"decode": main, **aux}
