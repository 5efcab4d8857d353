"""BiSeNetV1 equals mmseg: state_dict manifest and outputs for the same weights and input.

The reference outputs were produced once with mmseg 1.2.2 by
tests/fixtures/make_mmseg_fixtures.py from weights that fixture_weights.fill_state_dict
derives from the key names alone; mmseg is not needed here."""
import json
import os

import pytest
import torch

from bisenetv1 import BiSeNetV1
from conftest import FIXTURES
from fixture_weights import fill_state_dict, fixture_input

VARIANTS = [(50, "BiSeNetV1_r50", 59243385), (18, "BiSeNetV1_r18", 13425721)]


def manifest(name):
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("depth,name,params", VARIANTS)
def test_state_dict_matches_mmseg_manifest(depth, name, params):
    model = BiSeNetV1(depth)
    ref = manifest(name)
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert own == ref["state_dict"]
    assert list(own) == list(ref["state_dict"]), "key order differs from mmseg"
    assert sum(p.numel() for p in model.parameters()) == params == ref["num_parameters"]


@pytest.mark.parametrize("depth,name,params", VARIANTS)
def test_outputs_match_mmseg(depth, name, params):
    model = BiSeNetV1(depth).eval()
    model.load_state_dict(fill_state_dict(manifest(name)["state_dict"]), strict=True)
    ref = torch.load(os.path.join(FIXTURES, f"{name}_mmseg_output.pt"), weights_only=True)
    x = fixture_input(ref["input_seed"], tuple(ref["input_shape"]))
    with torch.no_grad():
        out = model(x)
    assert out.shape == ref["output"].shape
    assert ref["output"].abs().max() > 0.1  # the fixture is not degenerate
    assert (out - ref["output"]).abs().max().item() <= 1e-4


def test_training_mode_returns_main_and_aux_logits():
    model = BiSeNetV1(18).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert list(out) == ["decode", "aux_0", "aux_1"]
    assert out["decode"].shape == (2, 19, 8, 8)
    assert out["aux_0"].shape == (2, 19, 8, 8) and out["aux_1"].shape == (2, 19, 4, 4)
