"""AMP options and device selection."""
import pytest
import torch

from common.amp import MixedPrecision, StaticLossScaler, parse_loss_scale
from common.device import resolve_device_type, select_device
from common.errors import UserError


def test_device_auto_and_missing_devices():
    assert resolve_device_type("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert select_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device_type("gpu")
    with pytest.raises(UserError, match="no NPU"):
        resolve_device_type("npu")
    with pytest.raises(UserError, match="is not one of"):
        resolve_device_type("tpu")


def test_loss_scale_parsing():
    assert parse_loss_scale("dynamic") == "dynamic" and parse_loss_scale("128") == 128.0
    for bad in ("0", "-1", "lots"):
        with pytest.raises(UserError):
            parse_loss_scale(bad)


def test_cpu_o1_is_bf16_autocast_and_says_so():
    amp = MixedPrecision("cpu", "O1", 128)
    assert amp.dtype == torch.bfloat16 and amp.scaler is None
    assert "not applied" in amp.describe()
    conv = torch.nn.Conv2d(3, 4, 3)
    with amp.autocast():
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    assert MixedPrecision("cpu", "O0").describe() == "fp32 (O0)"


@pytest.mark.filterwarnings("ignore:.*CUDA is not available")
def test_cuda_style_scalers_are_chosen_by_loss_scale():
    assert isinstance(MixedPrecision("cuda", "O1", 64.0).scaler, StaticLossScaler)
    assert isinstance(MixedPrecision("cuda", "O1", "dynamic").scaler, torch.amp.GradScaler)


def test_o2_without_apex_is_reported():
    amp = MixedPrecision("cpu", "O2")
    assert amp.apex is None and "apex not installed" in amp.describe()
    with pytest.raises(UserError, match="apex is not installed"):
        MixedPrecision("cpu", "O1", want_apex=True)


def test_static_scaler_skips_non_finite_steps():
    p = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.SGD([p], lr=1.0)
    scaler = StaticLossScaler(8.0)
    scaler.scale((p * torch.tensor([1.0, float("inf")])).sum()).backward()
    scaler.unscale_(opt)
    scaler.step(opt)
    assert torch.equal(p.detach(), torch.ones(2))
    opt.zero_grad()
    scaler.update()
    scaler.scale((p * 2).sum()).backward()
    scaler.unscale_(opt)
    assert torch.allclose(p.grad, torch.full((2,), 2.0))
    scaler.step(opt)
    assert torch.allclose(p.detach(), torch.full((2,), -1.0))
