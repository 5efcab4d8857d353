"""Every network equals mmseg's: state_dict manifest and outputs for the same weights and
input.

The reference outputs were produced once with mmseg 1.2.2 by
tests/fixtures/make_mmseg_fixtures.py from weights that fixture_weights.fill_state_dict
derives from the key names alone; mmseg is not needed here."""
import json
import os

import pytest
import torch

from BiSeNetV1.bisenetv1 import BiSeNetV1
from BiSeNetV2.bisenetv2 import BiSeNetV2
from conftest import FIXTURES
from ICNet.icnet import ICNet
from PSPNet.pspnet import PSPNet
from fixture_weights import fill_state_dict, fixture_input

NETWORKS = [
    ("BiSeNetV1_r50", lambda: BiSeNetV1(50), 59243385),
    ("BiSeNetV1_r18", lambda: BiSeNetV1(18), 13425721),
    ("BiSeNetV2", BiSeNetV2, 14804255),
    ("PSPNet", PSPNet, 48977034),
    ("ICNet", ICNet, 47827833),
]
IDS = [n for n, _, _ in NETWORKS]


def manifest(name):
    with open(os.path.join(FIXTURES, f"{name}.json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name,build,params", NETWORKS, ids=IDS)
def test_state_dict_matches_mmseg_manifest(name, build, params):
    model = build()
    ref = manifest(name)
    own = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert own == ref["state_dict"]
    assert list(own) == list(ref["state_dict"]), "key order differs from mmseg"
    assert sum(p.numel() for p in model.parameters()) == params == ref["num_parameters"]


@pytest.mark.parametrize("name,build,params", NETWORKS, ids=IDS)
def test_outputs_match_mmseg(name, build, params):
    model = build().eval()
    model.load_state_dict(fill_state_dict(manifest(name)["state_dict"]), strict=True)
    ref = torch.load(os.path.join(FIXTURES, f"{name}_mmseg_output.pt"), weights_only=True)
    x = fixture_input(ref["input_seed"], tuple(ref["input_shape"]))
    with torch.no_grad():
        out = model(x)
    assert out.shape == ref["output"].shape
    assert ref["output"].abs().max() > 0.1  # the fixture is not degenerate
    assert (out - ref["output"]).abs().max().item() <= 1e-4


# head -> logits size for a 64x64 input (ICNet's ceil-mode max-pool makes its 1/16 map 5x5)
@pytest.mark.parametrize("build,heads", [
    (lambda: BiSeNetV1(18), {"decode": 8, "aux_0": 8, "aux_1": 4}),
    (BiSeNetV2, {"decode": 8, "aux_0": 16, "aux_1": 8, "aux_2": 4, "aux_3": 2}),
    (PSPNet, {"decode": 8, "aux": 8}),
    (ICNet, {"decode": 8, "aux_0": 5, "aux_1": 8}),
])
def test_training_mode_returns_main_and_aux_logits(build, heads):
    net = build().train()
    out = net(torch.randn(2, 3, 64, 64))
    classes = net.decode_head.conv_seg.out_channels
    assert list(out) == list(heads)
    for name, size in heads.items():
        assert out[name].shape == (2, classes, size, size), name
