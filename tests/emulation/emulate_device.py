"""Device emulation for the tests: this CPU process runs the project's code as an Ascend NPU or
a CUDA GPU would have it run, and refuses what that device refuses.

``SEGZOO_EMULATE=npu`` or ``cuda`` in a subprocess's environment, with this folder on its
``PYTHONPATH``, installs it at interpreter start (``sitecustomize.py``), so the real entry
points (train.py, the launch scripts, pth2onnx.py, demo.py, the benchmark) run under it;
:func:`emulated` does the same inside the test process and undoes it afterwards.

What the emulated device decides: the capability table's ``cpu`` row becomes the target's row
(the tensors stay on the CPU), so the optimizer (fused SGD on cuda), the loss scaler (torch's
GradScaler on cuda, torch_npu's on npu), autocast fp16, pinning, memory formats, the overflow
check and the CPU-only tuning are the target's.

On both, uninitialised memory is not zero: ``torch.empty_like`` returns NaN-filled tensors (a
fresh device allocation holds whatever was there), so code that reads memory it never wrote
shows it.

What an emulated NPU refuses, as torch_npu on Ascend 910 does:
- a memory format other than contiguous (``_to_copy`` accepts contiguous/preserve only);
- float64 collectives (HCCL has none);
- ``pin_memory=True`` without ``pin_memory_device`` (torch 2.5/2.6 then pin for CUDA only,
  so nothing is pinned);
- torch's generic GradScaler (it neither reads nor clears the NPU's overflow flag).
And it computes in saturation mode: a gradient that overflows is stored as the largest finite
value and raises the NPU's overflow flag (read through the fake ``torch_npu`` beside this file),
so a check that looks for inf/nan never sees it.
"""
import contextlib
import dataclasses
import os
import sys

import torch
import torch.distributed as dist
import torch.utils.data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = ("npu", "cuda")
SATURATED = torch.finfo(torch.float16).max
MISSING = object()


class Refused(RuntimeError):
    """What the emulated device refuses (the message says what the real one would do)."""


class OverflowFlag:
    """The emulated NPU's float status flag (saturation mode)."""
    raised = False


def _refuse_channels_last(kwargs, what):
    if kwargs.get("memory_format") in (torch.channels_last, torch.channels_last_3d):
        raise Refused(f"emulated npu: {what}(memory_format=channels_last): torch_npu's "
                      "_to_copy accepts only contiguous / preserve formats")


def _collective(original):
    def guarded(tensor, *args, **kwargs):
        tensors = tensor if isinstance(tensor, (list, tuple)) else [tensor]
        if any(isinstance(t, torch.Tensor) and t.dtype == torch.float64 for t in tensors):
            raise Refused(f"emulated npu: {original.__name__} on float64: HCCL has no float64 "
                          "collectives")
        return original(tensor, *args, **kwargs)
    return guarded


def _saturate(param):
    """Post-accumulate-grad hook: an overflowed gradient saturates and raises the flag."""
    grad = param.grad
    if grad is not None and not bool(torch.isfinite(grad).all()):
        OverflowFlag.raised = True
        grad.nan_to_num_(nan=0.0, posinf=SATURATED, neginf=-SATURATED)


def _patches(kind):
    """(owner, attribute, replacement) for ``kind``."""
    from common import device_caps
    row = dataclasses.replace(device_caps.CAPS[kind])
    patches = [(device_caps.CAPS, "cpu", row)]

    loader_init = torch.utils.data.DataLoader.__init__

    def loader(self, *args, **kwargs):
        if kind == "npu" and kwargs.get("pin_memory") and not kwargs.get("pin_memory_device"):
            raise Refused("emulated npu: DataLoader(pin_memory=True) without pin_memory_device: "
                          "torch 2.5/2.6 pin for CUDA only, so nothing would be pinned")
        kwargs.pop("pin_memory_device", None)  # nothing to pin for: the tensors stay here
        kwargs["pin_memory"] = False
        loader_init(self, *args, **kwargs)
    patches.append((torch.utils.data.DataLoader, "__init__", loader))

    empty_like = torch.empty_like

    def uninitialised_like(*args, **kwargs):
        out = empty_like(*args, **kwargs)
        return out.fill_(float("nan")) if out.is_floating_point() else out
    patches.append((torch, "empty_like", uninitialised_like))
    if kind != "npu":
        return patches

    contiguous, tensor_to, module_to = torch.Tensor.contiguous, torch.Tensor.to, torch.nn.Module.to

    def guarded_contiguous(self, *args, **kwargs):
        _refuse_channels_last(kwargs, "Tensor.contiguous")
        return contiguous(self, *args, **kwargs)

    def guarded_tensor_to(self, *args, **kwargs):
        _refuse_channels_last(kwargs, "Tensor.to")
        return tensor_to(self, *args, **kwargs)

    def guarded_module_to(self, *args, **kwargs):
        _refuse_channels_last(kwargs, "Module.to")
        return module_to(self, *args, **kwargs)
    patches += [(torch.Tensor, "contiguous", guarded_contiguous),
                (torch.Tensor, "to", guarded_tensor_to),
                (torch.nn.Module, "to", guarded_module_to)]
    for name in ("all_reduce", "all_gather", "broadcast", "reduce", "all_gather_into_tensor",
                 "reduce_scatter_tensor"):
        patches.append((dist, name, _collective(getattr(dist, name))))

    scaler_init = torch.amp.GradScaler.__init__

    def scaler(self, *args, **kwargs):
        if not getattr(self, "emulated_torch_npu", False):
            raise Refused("emulated npu: torch.amp.GradScaler neither reads nor clears the "
                          "NPU overflow flag; use torch_npu.npu.amp.GradScaler")
        scaler_init(self, *args, **kwargs)
    patches.append((torch.amp.GradScaler, "__init__", scaler))

    optimizer_init = torch.optim.Optimizer.__init__

    def optimizer(self, params, defaults):
        optimizer_init(self, params, defaults)
        for group in self.param_groups:
            for param in group["params"]:
                param.register_post_accumulate_grad_hook(_saturate)
    patches.append((torch.optim.Optimizer, "__init__", optimizer))
    return patches


def _fake_torch_npu_on_path():
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)


def install(kind):
    """Patch this process for good (a subprocess's start); returns the undo list."""
    if kind not in KINDS:
        raise SystemExit(f"SEGZOO_EMULATE={kind!r} is not one of {', '.join(KINDS)}")
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    if kind == "npu":
        _fake_torch_npu_on_path()
    undo = []
    for owner, name, value in _patches(kind):
        if isinstance(owner, dict):
            undo.append((owner, name, owner[name]))
            owner[name] = value
        else:  # MISSING: the attribute was inherited (e.g. from torch._C.TensorBase)
            undo.append((owner, name, vars(owner).get(name, MISSING)))
            setattr(owner, name, value)
    OverflowFlag.raised = False
    return undo


@contextlib.contextmanager
def emulated(kind):
    """Emulate ``kind`` inside this process for the ``with`` block."""
    undo = install(kind)
    try:
        yield
    finally:
        for owner, name, value in reversed(undo):
            if isinstance(owner, dict):
                owner[name] = value
            elif value is MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, value)
        OverflowFlag.raised = False
