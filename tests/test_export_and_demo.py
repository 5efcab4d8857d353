"""pth2onnx.py (opset 11, static and dynamic, onnxruntime parity) and demo.py outputs."""
import glob
import json
import os
import shutil

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from BiSeNetV1.bisenetv1 import BiSeNetV1
from BiSeNetV2.bisenetv2 import BiSeNetV2
from common import cityscapes
from common.config import load_config
from PSPNet.tools.synthetic_voc import ensure_synthetic_voc
from conftest import FIXTURES, REPO, assert_user_error, emulated_env, run
from fixture_weights import fill_state_dict
from ICNet.icnet import ICNet
from PSPNet import voc
from PSPNet.pspnet import PSPNet

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

# model -> (fixture manifest, smoke config, network)
CASES = {
    "BiSeNetV1": ("BiSeNetV1_r18", "bisenetv1_r18-d32_synthetic-smoke.yaml",
                  lambda: BiSeNetV1(18)),
    "BiSeNetV2": ("BiSeNetV2", "bisenetv2_fcn_synthetic-smoke.yaml", BiSeNetV2),
    "PSPNet": ("PSPNet", "pspnet_r50-d8_synthetic-voc-smoke.yaml", PSPNet),
    "ICNet": ("ICNet", "icnet_r50-d8_synthetic-smoke.yaml", ICNet),
}


def demo_images(model, cityscapes_root):
    """A folder of the model's dataset images and that dataset's palette."""
    if model == "PSPNet":
        root = ensure_synthetic_voc()
        folder = os.path.join(root, "VOC2012", "JPEGImages")
        return folder, voc.PALETTE, sorted(os.listdir(folder))[:3]
    folder = os.path.join(cityscapes_root, "leftImg8bit", "val", "lindau")
    return folder, cityscapes.PALETTE, sorted(os.listdir(folder))
ALL_MODELS = pytest.mark.parametrize("model", list(CASES))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """model -> a checkpoint in train.py's format holding well-conditioned weights."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for model, (fixture, smoke, _) in CASES.items():
        with open(os.path.join(FIXTURES, f"{fixture}.json")) as f:
            state = fill_state_dict(json.load(f)["state_dict"])
        cfg = load_config(os.path.join(REPO, model, "configs", smoke))
        paths[model] = str(folder / f"{model}.pth")
        torch.save({"meta": {"model": model, "iteration": 1, "config": cfg},
                    "state_dict": state}, paths[model])
    return paths


@pytest.fixture(scope="module")
def r18_checkpoint(checkpoints):
    return checkpoints["BiSeNetV1"]


def export(ckpt, out, *args, check=True, model="BiSeNetV1", env=None):
    return run(["python3", os.path.join(REPO, model, "pth2onnx.py"), "--checkpoint", ckpt,
                "--output", str(out), *args], check=check, env=env)


@ALL_MODELS
def test_static_export_opset11_parity(model, checkpoints, tmp_path):
    """As on an Ascend NPU machine (the device emulation)."""
    proc = export(checkpoints[model], tmp_path / "m.onnx", "--input-shape", "128", "256",
                  model=model, env=emulated_env("npu"))
    diff = float(proc.stdout.split("max abs diff ")[1].split()[0])
    assert diff <= 1e-3
    graph = onnx.load(str(tmp_path / "m.onnx"))
    assert graph.opset_import[0].version == 11
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 128, 256]
    assert graph.graph.input[0].name == ("actual_input_1" if model == "ICNet" else "input")


@ALL_MODELS
def test_dynamic_export_runs_other_sizes(model, checkpoints, tmp_path):
    import onnxruntime as ort
    export(checkpoints[model], tmp_path / "d.onnx", "--input-shape", "64", "128", "--dynamic",
           model=model)
    session = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"])
    net = CASES[model][2]().eval()
    net.load_state_dict(torch.load(checkpoints[model], weights_only=True)["state_dict"])
    x = torch.randn(2, 3, 96, 160)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = net(x).numpy()
    assert got.shape == expected.shape == (2, net.decode_head.conv_seg.out_channels, 96, 160)
    assert np.abs(got - expected).max() <= 1e-3


def test_parity_is_relative_and_a_rejected_export_replaces_nothing(r18_checkpoint, tmp_path):
    """Logits of 1e7 differ from onnxruntime by more than 1e-3 in absolute terms for a right
    export; the criterion is relative to their scale plus argmax agreement. A rejected export
    leaves the previous file as it was."""
    big = torch.load(r18_checkpoint, weights_only=True)
    big["state_dict"]["decode_head.conv_seg.weight"] *= 1e7
    torch.save(big, tmp_path / "big.pth")
    out = tmp_path / "m.onnx"
    proc = export(str(tmp_path / "big.pth"), out, "--input-shape", "64", "128")
    assert float(proc.stdout.split("max |logit| ")[1].split(",")[0]) > 1e5
    assert "argmax agreement 100.000%" in proc.stdout
    before = out.read_bytes()
    proc = export(r18_checkpoint, out, "--input-shape", "64", "128", "--tolerance", "0",
                  check=False)
    assert_user_error(proc, "was not written")
    assert out.read_bytes() == before
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_export_errors(r18_checkpoint, tmp_path):
    assert_user_error(export(r18_checkpoint, tmp_path / "x.onnx", "--opset", "9", check=False),
                      "--opset 9")
    assert_user_error(export(str(tmp_path / "none.pth"), tmp_path / "x.onnx", check=False),
                      "does not exist")
    assert not os.path.exists(tmp_path / "x.onnx")


@ALL_MODELS
def test_demo_writes_palette_prediction_and_overlay(model, checkpoints, synthetic_root,
                                                    tmp_path):
    folder, palette, images = demo_images(model, synthetic_root)
    if len(images) < len(os.listdir(folder)):  # a few images, given one by one
        folder = str(tmp_path / "in")
        os.makedirs(folder)
        for name in images:
            shutil.copy(os.path.join(demo_images(model, synthetic_root)[0], name), folder)
    proc = run(["python3", os.path.join(REPO, model, "demo.py"), folder, "--checkpoint",
                checkpoints[model], "--out-dir", str(tmp_path / "out"), "--device", "cpu"],
               env=emulated_env("npu"))  # as on an Ascend NPU machine
    assert proc.stdout.count("->") == len(images)
    stem = images[0].rsplit(".", 1)[0]
    src = np.array(Image.open(os.path.join(folder, images[0])))
    pred = np.array(Image.open(tmp_path / "out" / f"{stem}_pred.png"))
    over = np.array(Image.open(tmp_path / "out" / f"{stem}_overlay.png"))
    assert pred.shape == src.shape == over.shape
    colours = {tuple(c) for c in pred.reshape(-1, 3)}
    assert colours <= set(palette) and len(colours) >= 1
    assert np.abs(over.astype(int) - (src.astype(int) + pred.astype(int)) / 2).max() <= 1
    proc = run(["python3", os.path.join(REPO, model, "demo.py"), str(tmp_path / "nothing"),
                "--checkpoint", checkpoints[model]], check=False)
    assert_user_error(proc, "does not exist")


def test_demo_on_ordinary_photos(r18_checkpoint, synthetic_root, tmp_path):
    """Any image a user points at: JPEG and PNG of the same name, grayscale, RGBA, any name;
    no ground truth is invented for them and no two inputs share an output name."""
    frame = np.array(Image.open(sorted(glob.glob(os.path.join(
        synthetic_root, "leftImg8bit", "val", "*", "*.png")))[0]))
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(frame).save(photos / "cam.jpg")
    Image.fromarray(frame).save(photos / "cam.png")
    Image.fromarray(frame).convert("L").save(photos / "gray.png")
    Image.fromarray(frame).convert("RGBA").save(photos / "holiday photo.png")
    run(["python3", os.path.join(REPO, "BiSeNetV1", "demo.py"), str(photos), "--checkpoint",
         r18_checkpoint, "--out-dir", str(tmp_path / "out"), "--device", "cpu"])
    written = sorted(os.listdir(tmp_path / "out"))
    assert written == sorted(f"{stem}_{kind}.png" for stem in
                             ("cam_jpg", "cam_png", "gray", "holiday photo")
                             for kind in ("pred", "overlay", "source"))
    gray = np.array(Image.open(tmp_path / "out" / "gray_source.png"))
    assert gray.shape == frame.shape and (gray[..., 0] == gray[..., 1]).all()
