"""Confusion-matrix metrics against hand-computed cases."""
import math

import pytest
import torch

from common.metrics import compute_metrics, confusion_matrix, per_class_table


def test_confusion_matrix_counts_and_ignore():
    label = torch.tensor([[0, 0, 1, 255], [2, 1, 1, 0]])
    pred = torch.tensor([[0, 1, 1, 2], [2, 2, 1, 0]])
    cm = confusion_matrix(pred, label, num_classes=3)
    # rows = truth, cols = prediction; the 255 pixel is not counted
    assert cm.tolist() == [[2, 1, 0], [0, 2, 1], [0, 0, 1]]


def test_metrics_hand_computed():
    cm = torch.tensor([[2, 1, 0], [0, 2, 1], [0, 0, 1]])
    m = compute_metrics(cm)
    # IoU: c0 2/(3+2-2)=2/3, c1 2/(3+3-2)=1/2, c2 1/(1+2-1)=1/2
    assert m["IoU"] == pytest.approx([200 / 3, 50, 50])
    assert m["Acc"] == pytest.approx([200 / 3, 200 / 3, 100])
    assert m["aAcc"] == pytest.approx(500 / 7)
    assert m["mIoU"] == pytest.approx((200 / 3 + 100) / 3)
    assert m["mAcc"] == pytest.approx((400 / 3 + 100) / 3)


def test_absent_classes_follow_mmseg():
    # class 2 never labelled nor predicted -> NaN, left out of the means;
    # class 1 predicted but never labelled -> IoU 0 (counted), Acc NaN (not counted)
    cm = torch.tensor([[3, 1, 0], [0, 0, 0], [0, 0, 0]])
    m = compute_metrics(cm)
    assert m["IoU"][0] == pytest.approx(75) and m["IoU"][1] == 0
    assert math.isnan(m["IoU"][2]) and math.isnan(m["Acc"][1])
    assert m["mIoU"] == pytest.approx(37.5)
    assert m["mAcc"] == pytest.approx(75)


def test_one_matrix_over_the_set_not_mean_of_images():
    a = confusion_matrix(torch.tensor([0, 0, 0, 1]), torch.tensor([0, 0, 0, 0]), 2)
    b = confusion_matrix(torch.tensor([1]), torch.tensor([1]), 2)
    m = compute_metrics(a + b)
    assert m["IoU"] == pytest.approx([75, 50])


def test_table_lists_every_class():
    m = compute_metrics(torch.tensor([[1, 0], [0, 0]]))
    lines = per_class_table(("road", "sky"), m)
    assert any("road" in l and "100.00" in l for l in lines)
    assert any("sky" in l and "nan" in l for l in lines)
