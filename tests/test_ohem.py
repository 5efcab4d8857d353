"""OHEM cross-entropy (BiSeNetV2's ohem recipe) against hand-computed cases."""
import math

import pytest
import torch
import torch.nn.functional as F

from common.losses import cross_entropy, heads_cross_entropy
from BiSeNetV2.ohem import ohem_weights


def logits_for(probs_of_true):
    """2-class logits whose softmax gives class 0 the listed probabilities."""
    p = torch.tensor(probs_of_true)
    return torch.stack([torch.log(p), torch.log(1 - p)]).view(1, 2, 1, -1)


def test_threshold_selects_pixels_below_it():
    logits = logits_for([0.9, 0.5, 0.65, 0.99, 0.2, 0.8])
    label = torch.zeros(1, 1, 6, dtype=torch.long)
    w = ohem_weights(logits, label, thresh=0.7, min_kept=1)
    assert w.view(-1).tolist() == [0, 1, 1, 0, 1, 0]


def test_min_kept_raises_the_threshold():
    # sorted true-class probs: 0.2 0.5 0.65 0.8 0.9 0.99; min_kept k makes the (k+1)-th
    # smallest the threshold when it exceeds 0.7: k=3 -> 0.8, k=4 -> 0.9 (strictly below kept)
    logits = logits_for([0.9, 0.5, 0.65, 0.99, 0.2, 0.8])
    label = torch.zeros(1, 1, 6, dtype=torch.long)
    w = ohem_weights(logits, label, thresh=0.7, min_kept=3)
    assert w.view(-1).tolist() == [0, 1, 1, 0, 1, 0] and w.sum() == 3
    w = ohem_weights(logits, label, thresh=0.7, min_kept=4)
    assert w.view(-1).tolist() == [0, 1, 1, 0, 1, 1]


def test_ignored_pixels_never_kept_and_label_other_class():
    logits = logits_for([0.9, 0.5, 0.3, 0.6])
    label = torch.tensor([[[0, 255, 1, 1]]])  # class 1 prob = 1 - p: 0.7 and 0.4
    w = ohem_weights(logits, label, thresh=0.7, min_kept=1)
    assert w.view(-1).tolist() == [0, 0, 0, 1]


def test_weighted_loss_is_mean_over_all_pixels():
    logits = logits_for([0.9, 0.5, 0.65, 0.2])
    label = torch.zeros(1, 1, 4, dtype=torch.long)
    total = cross_entropy(logits, label, 255, ohem_weights(logits, label, 255, 0.7, 1))
    expected = (-math.log(0.5) - math.log(0.65) - math.log(0.2)) / 4
    assert total.item() == pytest.approx(expected, rel=1e-5)
    plain, _ = heads_cross_entropy({"decode": logits}, label, {"decode": 1.0})
    assert plain.item() == pytest.approx(F.cross_entropy(logits, label).item(), rel=1e-6)
