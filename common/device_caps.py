"""What each device kind supports, in one place; every path that depends on it asks here.

- ``channels_last``: torch_npu's ``_to_copy`` accepts only contiguous / preserve formats, so
  NHWC models (the evaluation fast path, ``--channels-last``) are cuda / cpu only.
- ``pin_memory``: page-locked host batches speed host-to-device copies on cuda and npu.
- ``collective_dtype``: HCCL has no float64 collectives; float32 serves every backend.
- ``autocast_dtype``: fp16 on accelerators, bf16 on CPU (no loss scaling needed there).
- ``grad_scaler``: torch_npu's own scaler clears the NPU overflow flag and syncs overflow
  across ranks (saturation mode on Ascend 910); the generic ``torch.amp.GradScaler`` does not.
- ``channels_last_weights``: in NHWC training (``--channels-last``) the batch is always
  channels_last, and so is every activation after it; the weights too on cuda. On cpu they
  stay contiguous: oneDNN reorders weights into its own layout on every call either way, and
  the fused SGD kernel copies non-contiguous parameters to contiguous and back (more than
  twice its time on ICNet).
- ``fused_sgd``: torch's fused SGD kernel exists for cpu and cuda; on npu the fused optimizers
  are torch_npu's / apex's own, so the per-parameter loop is used there.
"""
from dataclasses import dataclass

import torch

from common.errors import UserError


@dataclass(frozen=True)
class DeviceCaps:
    kind: str
    channels_last: bool
    pin_memory: bool
    collective_dtype: torch.dtype
    autocast_dtype: torch.dtype
    grad_scaler: str  # "torch_npu", "torch" or "" (no loss scaling)
    channels_last_weights: bool
    fused_sgd: bool


CAPS = {
    "cpu": DeviceCaps("cpu", True, False, torch.float32, torch.bfloat16, "", False, True),
    "cuda": DeviceCaps("cuda", True, True, torch.float32, torch.float16, "torch", True, True),
    "npu": DeviceCaps("npu", False, True, torch.float32, torch.float16, "torch_npu", False, False),
}


def caps(device_type):
    if device_type not in CAPS:
        raise UserError(f"device type {device_type!r} is not one of {', '.join(CAPS)}")
    return CAPS[device_type]


def new_grad_scaler(device_type):
    """The dynamic loss scaler of ``device_type`` (see :data:`CAPS`)."""
    if caps(device_type).grad_scaler == "torch_npu":
        import torch_npu  # registers torch.npu; only reached on an NPU run
        return torch_npu.npu.amp.GradScaler()
    return torch.amp.GradScaler(device_type)


def check_channels_last(device_type):
    """``--channels-last`` on a device without NHWC support is a one-line error."""
    if not caps(device_type).channels_last:
        raise UserError(f"--channels-last (runtime.channels_last) is not supported on "
                        f"{device_type} (torch_npu copies only contiguous tensors); drop it")
