"""Warm-up + poly learning rate (mmseg's LinearLR then PolyLR, closed form)."""
import pytest

from common.lr_schedule import lr_at


def test_warmup_is_linear_from_ratio():
    assert lr_at(0, 0.05, 160000, 1000, 0.1) == pytest.approx(0.005)
    assert lr_at(500, 0.05, 160000, 1000, 0.1) == pytest.approx(0.05 * 0.55)


def test_poly_after_warmup_reaches_eta_min():
    assert lr_at(1000, 0.05, 160000, 1000, 0.1, 0.9, 1e-4) == pytest.approx(0.05)
    mid = lr_at(80500, 0.05, 160000, 1000, 0.1, 0.9, 1e-4)
    assert mid == pytest.approx((0.05 - 1e-4) * 0.5 ** 0.9 + 1e-4)
    assert lr_at(160000, 0.05, 160000, 1000, 0.1, 0.9, 1e-4) == pytest.approx(1e-4)


def test_no_warmup_poly_from_start():
    assert lr_at(0, 0.01, 80000, 0) == pytest.approx(0.01)
    assert lr_at(40000, 0.01, 80000, 0, power=1.0, eta_min=0) == pytest.approx(0.005)
