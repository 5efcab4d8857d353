"""mmseg's ``EncoderDecoder`` forward, shared by every network.

A subclass sets ``backbone`` (returning a tuple of feature maps), optionally ``neck`` (maps
that tuple to another), ``decode_head`` and
``auxiliary_head`` (one head, or a ModuleList of heads; heads pick their input by
``in_index``). Training mode returns ``{"decode": logits, "aux": ...}`` or
``{"decode": ..., "aux_0": ..., "aux_1": ...}`` at the heads' own strides (the loss resizes them
to the label); eval / export mode returns only the decode logits resized (bilinear) to the
input size, in the input's memory format.

On CPU (``host_tuning`` in the capability table) without gradients, eval mode runs the network in the memory format measured faster for
it (:func:`eval_layout`): NHWC lets oneDNN take each activation as it is, NCHW lets it keep
its blocked layout through large convolutions. Neither wins everywhere: on this project's AMD
EPYC (eval fp32, 256x512) NHWC is 13% faster for BiSeNetV2 and 18% for ICNet, NCHW 9% for
PSPNet and 7% for BiSeNetV1. The same function within float rounding either way.
"""
import time
import weakref

import torch
import torch.nn as nn

from common.cpu_conv import is_nhwc
from common.device_caps import caps
from common.layers import resize

_LAYOUTS = weakref.WeakKeyDictionary()  # network -> {(dtype, autocast, pixels): memory format}


class EncoderDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.neck = None  # a subclass that assigns a module here gets it registered

    def forward(self, x):
        if (self.training or not caps(x.device.type).host_tuning or torch.is_grad_enabled()
                or tracing()):
            return self.run(x)
        layout = eval_layout(self, x)
        main = self.decode_logits(x.contiguous(memory_format=layout))
        caller = torch.channels_last if is_nhwc(x) else torch.contiguous_format
        return resize(main.contiguous(memory_format=caller), x.shape[2:])  # the small logits

    def run(self, x):
        """Training: every head's logits; eval: the decode logits at input size."""
        if not self.training:
            return resize(self.decode_logits(x), x.shape[2:])
        feats = self.features(x)
        main = self.decode_head(feats)
        if isinstance(self.auxiliary_head, nn.ModuleList):
            aux = {f"aux_{i}": head(feats) for i, head in enumerate(self.auxiliary_head)}
        else:
            aux = {"aux": self.auxiliary_head(feats)}
        return {"decode": main, **aux}

    def features(self, x):
        feats = self.backbone(x)
        return self.neck(feats) if self.neck is not None else feats

    def decode_logits(self, x):
        """The decode head's logits at its own stride."""
        return self.decode_head(self.features(x))


def eval_layout(net, x):
    """The memory format ``net``'s eval forward runs faster in for inputs like ``x``, measured
    on the first such input (a warm-up and two timed calls in each format, alternating; the
    global RNG is not touched) and kept while ``net`` lives. Inputs are grouped by dtype,
    autocast dtype and pixel count rounded up to a power of two."""
    autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    pixels = x.shape[0] * x.shape[2] * x.shape[3]
    key = (x.dtype, autocast, 1 << max(pixels - 1, 0).bit_length())
    chosen = _LAYOUTS.setdefault(net, {})
    if key not in chosen:
        layouts = {fmt: x.contiguous(memory_format=fmt)
                   for fmt in (torch.channels_last, torch.contiguous_format)}
        seconds = dict.fromkeys(layouts, 0.0)
        for xi in layouts.values():
            net.decode_logits(xi)  # warm-up: the convolutions measure their own choices
        for _ in range(2):
            for fmt, xi in layouts.items():
                start = time.perf_counter()
                net.decode_logits(xi)
                seconds[fmt] += time.perf_counter() - start
        chosen[key] = min(seconds, key=seconds.get)
    return chosen[key]


def tracing():
    """Exporting, tracing or compiling: the graph keeps the caller's memory format."""
    return (torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()
            or torch.compiler.is_compiling())
