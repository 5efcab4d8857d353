"""Device selection: ``auto`` picks npu (torch_npu importable and a device present), else cuda,
else cpu. Asking for a device that is not there is a :class:`UserError`."""
import importlib
import importlib.util
import os

import torch

from common.errors import UserError, first_line

DEVICE_CHOICES = ("auto", "npu", "cuda", "gpu", "cpu")


def npu_available():
    """True when torch_npu imports and reports at least one NPU. torch_npu installed but
    failing to import (e.g. no CANN runtime) is an error, not a silent fall back to the CPU."""
    if importlib.util.find_spec("torch_npu") is None:
        return False
    try:
        importlib.import_module("torch_npu")
    except Exception as exc:
        raise UserError(f"torch_npu is installed but does not import ({first_line(exc)}); "
                        "source env_npu.sh (CANN), or pass --device cpu / cuda") from None
    return hasattr(torch, "npu") and torch.npu.is_available() and torch.npu.device_count() > 0


def resolve_device_type(requested):
    """Map the ``--device`` value to one of ``npu``, ``cuda``, ``cpu``."""
    if requested not in DEVICE_CHOICES:
        raise UserError(f"--device {requested!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if requested == "auto":
        if npu_available():
            return "npu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "npu" and not npu_available():
        raise UserError("--device npu was asked for but no NPU is usable (install torch_npu and "
                        "source env_npu.sh), or pass --device cpu")
    if requested in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise UserError(f"--device {requested} was asked for but torch sees no CUDA GPU; "
                            "pass --device cpu or install a CUDA build of torch")
        return "cuda"
    return requested


def select_device(requested="auto", local_rank=0, device_list=None):
    """Return the ``torch.device`` this process trains on and make it current.

    ``device_list`` (the ModelZoo ``--device_list=0,1,...``) maps local ranks to device ids;
    otherwise ``ASCEND_DEVICE_ID`` / the local rank picks the id.
    """
    dtype = resolve_device_type(requested)
    if dtype == "cpu":
        return torch.device("cpu")
    ids = [int(i) for i in device_list.split(",")] if device_list else None
    if ids:
        if local_rank >= len(ids):
            raise UserError(f"--device_list={device_list} names {len(ids)} devices but local "
                            f"rank {local_rank} needs one more")
        index = ids[local_rank]
    else:
        index = local_rank + (int(os.environ.get("ASCEND_DEVICE_ID", 0)) if dtype == "npu" else 0)
    count = torch.npu.device_count() if dtype == "npu" else torch.cuda.device_count()
    if index >= count:
        raise UserError(f"{dtype} device {index} does not exist ({count} visible); "
                        "lower RANK_SIZE or fix --device_list")
    getattr(torch, dtype).set_device(index)
    return torch.device(dtype, index)


def synchronize(device):
    """Wait for queued device work (for honest timings)."""
    if device.type in ("cuda", "npu"):
        getattr(torch, device.type).synchronize(device)


def memory_mb(device):
    """Peak allocated device memory in MiB (0 on CPU, where torch does not track it)."""
    if device.type in ("cuda", "npu"):
        return getattr(torch, device.type).max_memory_allocated(device) / 2**20
    return 0.0
