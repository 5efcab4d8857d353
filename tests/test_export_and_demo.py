"""pth2onnx.py (opset 11, static and dynamic, onnxruntime parity) and demo.py outputs."""
import json
import os

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from bisenetv1 import BiSeNetV1
from common.cityscapes import PALETTE
from common.config import load_config
from conftest import BISENETV1, FIXTURES, assert_user_error, run
from fixture_weights import fill_state_dict

SMOKE = os.path.join(BISENETV1, "configs", "bisenetv1_r18-d32_synthetic-smoke.yaml")


@pytest.fixture(scope="module")
def r18_checkpoint(tmp_path_factory):
    """A checkpoint in train.py's format holding well-conditioned R18 weights."""
    with open(os.path.join(FIXTURES, "BiSeNetV1_r18.json")) as f:
        state = fill_state_dict(json.load(f)["state_dict"])
    cfg = load_config(SMOKE)
    path = tmp_path_factory.mktemp("ckpt") / "r18.pth"
    torch.save({"meta": {"model": "BiSeNetV1", "iteration": 1, "config": cfg},
                "state_dict": state}, path)
    return str(path)


def export(ckpt, out, *args, check=True):
    return run(["python3", os.path.join(BISENETV1, "pth2onnx.py"), "--checkpoint", ckpt,
                "--output", str(out), *args], check=check)


def test_static_export_opset11_parity(r18_checkpoint, tmp_path):
    proc = export(r18_checkpoint, tmp_path / "m.onnx", "--input-shape", "128", "256")
    diff = float(proc.stdout.split("max abs diff vs PyTorch: ")[1].split()[0])
    assert diff <= 1e-3
    model = onnx.load(str(tmp_path / "m.onnx"))
    assert model.opset_import[0].version == 11
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 128, 256] and model.graph.input[0].name == "input"


def test_dynamic_export_runs_other_sizes(r18_checkpoint, tmp_path):
    import onnxruntime as ort
    export(r18_checkpoint, tmp_path / "d.onnx", "--input-shape", "64", "128", "--dynamic")
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    model = BiSeNetV1(18).eval()
    model.load_state_dict(torch.load(r18_checkpoint, weights_only=True)["state_dict"])
    x = torch.randn(2, 3, 96, 160)
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (2, 19, 96, 160) and np.abs(got - expected).max() <= 1e-3


def test_export_errors(r18_checkpoint, tmp_path):
    assert_user_error(export(r18_checkpoint, tmp_path / "x.onnx", "--opset", "9", check=False),
                      "--opset 9")
    assert_user_error(export(str(tmp_path / "none.pth"), tmp_path / "x.onnx", check=False),
                      "does not exist")
    assert not os.path.exists(tmp_path / "x.onnx")


def test_demo_writes_palette_prediction_and_overlay(r18_checkpoint, synthetic_root, tmp_path):
    folder = os.path.join(synthetic_root, "leftImg8bit", "val", "lindau")
    proc = run(["python3", os.path.join(BISENETV1, "demo.py"), folder, "--checkpoint",
                r18_checkpoint, "--out-dir", str(tmp_path / "out"), "--device", "cpu"])
    images = sorted(os.listdir(folder))
    assert proc.stdout.count("->") == len(images)
    stem = images[0][:-4]
    src = np.array(Image.open(os.path.join(folder, images[0])))
    pred = np.array(Image.open(tmp_path / "out" / f"{stem}_pred.png"))
    over = np.array(Image.open(tmp_path / "out" / f"{stem}_overlay.png"))
    assert pred.shape == src.shape == over.shape
    colours = {tuple(c) for c in pred.reshape(-1, 3)}
    assert colours <= set(PALETTE) and len(colours) >= 1
    assert np.abs(over.astype(int) - (src.astype(int) + pred.astype(int)) / 2).max() <= 1
    proc = run(["python3", os.path.join(BISENETV1, "demo.py"), str(tmp_path / "nothing"),
                "--checkpoint", r18_checkpoint], check=False)
    assert_user_error(proc, "does not exist")
