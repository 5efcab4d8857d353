"""Mixed precision: ``--amp``, ``--opt-level O0|O1|O2``, ``--loss-scale dynamic|<float>``.

* O0: fp32.
* O1: ``torch.autocast``: fp16 with a loss scaler on npu/cuda, bf16 (no scaling needed) on cpu.
* O2: apex ``amp.initialize(opt_level='O2')`` when apex is installed; without apex it runs the
  O1 autocast path with fp32 master weights and says so in the log. ``--apex`` asks for apex at
  O1 too (an error when it is not installed).

Nothing is changed silently: every substitution is reported through ``describe()``.
"""
import importlib

import torch

from common.device_caps import FiniteCheck, caps, new_grad_scaler, overflow_check
from common.errors import UserError

OPT_LEVELS = ("O0", "O1", "O2")


def parse_loss_scale(value):
    """``'dynamic'`` or a positive float."""
    if value in (None, "dynamic"):
        return "dynamic"
    try:
        scale = float(value)
    except (TypeError, ValueError):
        raise UserError(f"--loss-scale {value!r} is neither 'dynamic' nor a number") from None
    if not scale > 0:
        raise UserError(f"--loss-scale must be positive, got {value}")
    return scale


def _apex_amp():
    try:
        return importlib.import_module("apex.amp")
    except Exception:
        return None


def _grads(optimizer):
    return [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]


class StaticLossScaler:
    """Fixed loss scale (apex ``loss_scale=<float>``); steps whose gradients overflowed are
    skipped. ``check`` (:func:`common.device_caps.overflow_check`) says how the device shows
    an overflow: non-finite values (the default), or Ascend 910's overflow flag (saturation
    mode, where the values stay finite)."""

    def __init__(self, scale, check=None):
        self._scale = float(scale)
        self._check = check or FiniteCheck()
        self._found_inf = False
        self.skipped = False

    def scale(self, loss):
        return loss * self._scale

    def unscale_(self, optimizer):
        """Divide every gradient by the scale in one fused call; one device sync for the
        overflow check of all of them (not one per parameter)."""
        grads = _grads(optimizer)
        if not grads:
            self._found_inf = False
            return
        torch._foreach_mul_(grads, 1.0 / self._scale)
        self._found_inf = self._check.overflowed(grads)

    def step(self, optimizer):
        self.skipped = self._found_inf
        if not self._found_inf:
            optimizer.step()

    def update(self):
        self._found_inf = False

    def get_scale(self):
        return self._scale

    def state_dict(self):
        return {"scale": self._scale}

    def load_state_dict(self, state):
        self._scale = float(state["scale"])


class MixedPrecision:
    """Autocast context, loss scaling and the backward/step of one iteration."""

    def __init__(self, device_type, opt_level="O0", loss_scale="dynamic", want_apex=False):
        if opt_level not in OPT_LEVELS:
            raise UserError(f"--opt-level {opt_level!r} is not one of {', '.join(OPT_LEVELS)}")
        self.device_type = device_type
        self.opt_level = opt_level
        self.loss_scale = parse_loss_scale(loss_scale)
        self.enabled = opt_level != "O0"
        self.notes = []
        self.apex = None
        if self.enabled and (want_apex or opt_level == "O2"):
            self.apex = _apex_amp()
            if self.apex is None and want_apex:
                raise UserError("--apex was asked for but apex is not installed; install NVIDIA/"
                                "Ascend apex or drop --apex to use torch.amp")
            if self.apex is None:
                self.notes.append("apex not installed: O2 runs as torch.autocast with fp32 "
                                  "master weights (O1 semantics)")
        self.dtype = caps(device_type).autocast_dtype
        self.overflow = overflow_check(device_type)
        self._fused_ready = set()  # ids of fused optimizers whose momentum buffers exist
        self.scaler = None
        if self.enabled and self.apex is None:
            if not caps(device_type).grad_scaler:
                if self.loss_scale != "dynamic":
                    self.notes.append(f"{device_type} autocast uses bf16, which needs no loss "
                                      f"scaling: --loss-scale {self.loss_scale} is not applied")
            elif self.loss_scale == "dynamic":
                self.scaler = new_grad_scaler(device_type)
            else:
                self.scaler = StaticLossScaler(self.loss_scale, self.overflow)

    def describe(self):
        if not self.enabled:
            return "fp32 (O0)"
        backend = "apex" if self.apex else "torch.autocast"
        scale = "none" if self.scaler is None and not self.apex else self.loss_scale
        text = f"{self.opt_level} via {backend}, {str(self.dtype).replace('torch.', '')}, loss scale {scale}"
        return "; ".join([text] + self.notes)

    def prepare(self, model, optimizer):
        """apex wants to wrap model and optimizer before DDP; torch.amp needs nothing."""
        if self.apex is None:
            return model, optimizer
        scale = "dynamic" if self.loss_scale == "dynamic" else self.loss_scale
        return self.apex.initialize(model, optimizer, opt_level=self.opt_level, loss_scale=scale)

    @property
    def autocast_dtype(self):
        """The dtype :meth:`autocast` computes in; None when it is off (O0, or apex)."""
        return self.dtype if self.enabled and self.apex is None else None

    def autocast(self):
        return torch.autocast(self.device_type, dtype=self.dtype,
                              enabled=self.autocast_dtype is not None)

    @property
    def dynamic_scaling(self):
        """True when a dynamic loss scaler skips steps with non-finite gradients by design."""
        return (self.scaler is not None and not isinstance(self.scaler, StaticLossScaler)) or (
            self.apex is not None and self.loss_scale == "dynamic")

    def zero_grad(self, optimizer):
        """Clear the gradients; apex's patched ``zero_grad()`` takes no argument."""
        if self.apex is not None:
            optimizer.zero_grad()
        else:
            optimizer.zero_grad(set_to_none=True)

    def backward_and_step(self, loss, optimizer):
        """Backward, (unscale), optimizer step unless the gradients are non-finite. Returns
        whether the step was taken: a bool, or with a dynamic GradScaler a 0-dim bool tensor
        on the device (reading it would cost a host sync every iteration)."""
        if self.apex is not None:
            with self.apex.scale_loss(loss, optimizer) as scaled:
                scaled.backward()
            optimizer.step()
            return True
        self.overflow.clear()
        if self.scaler is None:
            loss.backward()
            grads = _grads(optimizer)
            if grads and self.overflow.overflowed(grads):
                return False
            optimizer.step()
            return True
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        if isinstance(self.scaler, StaticLossScaler):
            self.scaler.step(optimizer)
            self.scaler.update()
            return not self.scaler.skipped
        self._zero_momentum_before_first_fused_step(optimizer)
        before = self.scaler._scale.clone()  # a device tensor: no host sync here
        self.scaler.step(optimizer)
        self.scaler.update()
        # GradScaler lowers its scale on a skip; the answer stays on the device (a 0-dim bool
        # tensor) so that the loop reads it only at its log line
        return self.scaler._scale >= before

    def _zero_momentum_before_first_fused_step(self, optimizer):
        """GradScaler hands its overflow flag to a fused optimizer, which skips the update
        inside its kernel. On the first step torch's fused SGD has already made its momentum
        buffers with ``empty_like``, so a skipped first step would leave uninitialised memory
        there for the next step to apply. Zero buffers made beforehand give the same update as
        a fresh buffer (momentum x 0 + gradient, no dampening) and stay zero on a skip."""
        if id(optimizer) in self._fused_ready or not optimizer.defaults.get("fused"):
            return
        for group in optimizer.param_groups:
            if group.get("momentum", 0) == 0:
                continue
            if group.get("dampening", 0) != 0:
                raise UserError("fused SGD with dampening cannot start from zero momentum "
                                "buffers; use dampening 0 (the recipes' value)")
            for p in group["params"]:
                state = optimizer.state[p]
                if state.get("momentum_buffer") is None:
                    state["momentum_buffer"] = torch.zeros_like(p)
        self._fused_ready.add(id(optimizer))

    def state_dict(self):
        """The loss scaler's state (apex's amp state with apex), for checkpoints."""
        if self.apex is not None:
            return {"apex": self.apex.state_dict()}
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state):
        if self.apex is not None and "apex" in state:
            self.apex.load_state_dict(state["apex"])
        elif self.scaler is not None and state and "apex" not in state:
            self.scaler.load_state_dict(state)
