"""A stand-in for torch_npu under the device emulation (tests/emulation/emulate_device.py):
the API the project calls, answering as an Ascend 910 in saturation mode whose tensors live on
the CPU. ``torch.npu`` reports no device, so ``--device auto`` picks the (emulated) CPU row."""
import types

import torch

from emulate_device import OverflowFlag


class GradScaler(torch.amp.GradScaler):
    """torch_npu's dynamic loss scaler: an overflow is what the NPU's flag says."""
    emulated_torch_npu = True

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000, dynamic=True, enabled=True):
        super().__init__("cpu", init_scale=init_scale, growth_factor=growth_factor,
                         backoff_factor=backoff_factor, growth_interval=growth_interval,
                         enabled=enabled)
        self.dynamic = dynamic

    def _unscale_grads_(self, optimizer, inv_scale, found_inf, allow_fp16):
        per_device = super()._unscale_grads_(optimizer, inv_scale, found_inf, allow_fp16)
        if OverflowFlag.raised:
            for flag in per_device.values():
                flag.fill_(1.0)
        return per_device


def _clear():
    OverflowFlag.raised = False


utils = types.SimpleNamespace(is_support_inf_nan=lambda: False,
                              clear_npu_overflow_flag=_clear,
                              get_npu_overflow_flag=lambda: OverflowFlag.raised)
npu = types.SimpleNamespace(amp=types.SimpleNamespace(GradScaler=GradScaler), utils=utils,
                            is_available=lambda: False, device_count=lambda: 0)
torch.npu = npu
