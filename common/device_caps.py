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
- ``overflow_flag``: Ascend 910 computes in saturation mode (an fp16 overflow gives the largest
  finite value, not inf), so overflow is read from the NPU's flag; 910B and later produce
  inf/nan like the others (torch_npu's ``is_support_inf_nan`` tells which).
- ``compile``: ``torch.compile``'s inductor backend generates code for cpu and cuda only.
- ``host_tuning``: the CPU-only tuning (measured convolution algorithms and eval layouts, the
  host-memory policy) applies only where the network runs on the host.
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
    overflow_flag: bool
    compile: bool
    host_tuning: bool


CAPS = {
    "cpu": DeviceCaps("cpu", True, False, torch.float32, torch.bfloat16, "", False, True,
                      False, True, True),
    "cuda": DeviceCaps("cuda", True, True, torch.float32, torch.float16, "torch", True, True,
                       False, True, False),
    "npu": DeviceCaps("npu", False, True, torch.float32, torch.float16, "torch_npu", False, False,
                      True, False, False),
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


class FiniteCheck:
    """Overflow shows as inf/nan: one device sync for all gradients' norms."""

    def clear(self):
        pass

    def overflowed(self, grads):
        return not bool(torch.isfinite(torch.stack(torch._foreach_norm(grads))).all())


class NpuFlagCheck:
    """Ascend 910 in saturation mode: overflowed values stay finite, the NPU's float status
    flag records the overflow; it is cleared before each backward and read after it."""

    def __init__(self, utils):
        self._utils = utils

    def clear(self):
        self._utils.clear_npu_overflow_flag()

    def overflowed(self, grads):
        return bool(self._utils.get_npu_overflow_flag())


def overflow_check(device_type):
    """How gradients of ``device_type`` show an overflow (see ``overflow_flag``)."""
    if caps(device_type).overflow_flag:
        import torch_npu  # only reached on an NPU run
        utils = torch_npu.npu.utils
        if not utils.is_support_inf_nan():
            return NpuFlagCheck(utils)
    return FiniteCheck()


def check_compile(device_type):
    """``--compile`` on a device inductor does not generate code for is a one-line error."""
    if not caps(device_type).compile:
        raise UserError(f"--compile (runtime.compile) is not supported on "
                        f"{caps(device_type).kind} "
                        "(torch.compile's inductor targets cpu and cuda); drop it")


def check_channels_last(device_type):
    """``--channels-last`` on a device without NHWC support is a one-line error."""
    if not caps(device_type).channels_last:
        raise UserError(f"--channels-last (runtime.channels_last) is not supported on "
                        f"{caps(device_type).kind} (torch_npu copies only contiguous tensors); "
                        "drop it")
