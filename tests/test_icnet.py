"""ICNet's seed interfaces: ICNet.onnx (actual_input_1, 1x3x1024x2048, opset 11), the seed's
config names and path keys, demo.py's defaults, --summary and label output, and the
scripts/*.sh helpers."""
import json
import os
import socket

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from common.cityscapes import PALETTE
from common.config import load_config
from conftest import FIXTURES, ICNET, assert_user_error, run
from fixture_weights import fill_state_dict
from ICNet.icnet import ICNet

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

CONFIGS = os.path.join(ICNET, "configs")


@pytest.fixture(scope="module")
def icnet_checkpoint(tmp_path_factory):
    """A checkpoint in train.py's format with well-conditioned weights and its config."""
    with open(os.path.join(FIXTURES, "ICNet.json")) as f:
        state = fill_state_dict(json.load(f)["state_dict"])
    cfg = load_config(os.path.join(CONFIGS, "icnet_r50-d8_synthetic-smoke.yaml"))
    path = tmp_path_factory.mktemp("icnet") / "icnet.pth"
    torch.save({"meta": {"model": "ICNet", "iteration": 1, "config": cfg}, "state_dict": state},
               path)
    return path


def test_recipes_and_seed_names():
    r80 = load_config(os.path.join(CONFIGS, "icnet_r50-d8_cityscapes-832x832_80k.yaml"),
                      model=ICNet)
    assert r80["optim"]["lr"] == 0.01 and r80["schedule"]["max_iters"] == 80000
    assert r80["schedule"]["warmup_iters"] == 0 and r80["schedule"]["eta_min"] == 0.0001
    assert r80["data"]["crop_size"] == [832, 832] and r80["data"]["batch_size"] == 2
    assert r80["loss"]["weights"] == {"decode": 1.0, "aux_0": 0.4, "aux_1": 0.4}
    r160 = load_config(os.path.join(CONFIGS, "icnet_r50-d8_cityscapes-832x832_160k.yaml"))
    assert r160["schedule"]["max_iters"] == 160000
    seed = load_config(os.path.join(CONFIGS, "icnet.yaml"))
    assert seed["paths"] == {"cityscapes_root": None, "ckpt_dir": "ckpt", "ckpt_path": None}
    assert load_config(os.path.join(CONFIGS, "icnet_eval.yaml"))["paths"]["ckpt_dir"] == "ckpt"


def test_default_export_is_the_seed_interface(icnet_checkpoint, tmp_path):
    proc = run(["python3", os.path.join(ICNET, "pth2onnx.py"), "--checkpoint",
                str(icnet_checkpoint)], cwd=str(tmp_path))
    assert "opset 11, input actual_input_1 1x3x1024x2048" in proc.stdout
    graph = onnx.load(str(tmp_path / "ICNet.onnx"))
    dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert graph.graph.input[0].name == "actual_input_1" and dims == [1, 3, 1024, 2048]
    assert graph.opset_import[0].version == 11
    assert float(proc.stdout.split("max abs diff ")[1].split()[0]) <= 1e-3


def test_demo_defaults_summary_and_label(icnet_checkpoint, synthetic_root, tmp_path):
    image = sorted(os.listdir(os.path.join(synthetic_root, "leftImg8bit", "val", "lindau")))[0]
    path = os.path.join(synthetic_root, "leftImg8bit", "val", "lindau", image)
    demo = os.path.join(ICNET, "demo.py")
    # icnet_eval.yaml (the default config) names no checkpoint: a one-line error says so
    assert_user_error(run(["python3", demo, path], check=False), "paths.ckpt_path",
                      "icnet_eval.yaml")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(f"_base_: {os.path.join(CONFIGS, 'icnet_eval.yaml')}\n"
                   f"data:\n  test_scale: null\npaths:\n  ckpt_path: {icnet_checkpoint}\n")
    proc = run(["python3", demo, path, "--config", str(cfg), "--summary", "--out-dir",
                str(tmp_path / "out"), "--device", "cpu"])
    assert "Total params: 47,827,833" in proc.stdout
    stem = image[:-4]
    for suffix in ("pred", "overlay", "source", "label"):
        assert os.path.isfile(tmp_path / "out" / f"{stem}_{suffix}.png"), suffix
    label = np.array(Image.open(tmp_path / "out" / f"{stem}_label.png"))
    assert {tuple(c) for c in label.reshape(-1, 3)} <= set(PALETTE) | {(0, 0, 0)}
    source = np.array(Image.open(tmp_path / "out" / f"{stem}_source.png"))
    assert np.array_equal(source, np.array(Image.open(path)))


def test_config_paths_drive_train_and_eval(tiny_configs, synthetic_root, tmp_path):
    cfg = tmp_path / "seedlike.yaml"
    cfg.write_text(f"_base_: {tiny_configs['ICNet']}\npaths:\n  cityscapes_root: "
                   f"{synthetic_root}\n  ckpt_dir: {tmp_path / 'ckpt'}\n")
    proc = run(["python3", os.path.join(ICNET, "train.py"), "--config", str(cfg), "--device",
                "cpu", "--max_iters", "2", "--no-validate"])
    assert f"work dir {tmp_path / 'ckpt'}" in proc.stdout
    assert "using the synthetic" not in proc.stdout  # paths.cityscapes_root was used
    assert os.path.isfile(tmp_path / "ckpt" / "iter_2.pth")
    proc = run(["python3", os.path.join(ICNET, "train.py"), "--config", str(cfg), "--device",
                "cpu", "--eval-only"])
    assert f"Evaluating {tmp_path / 'ckpt' / 'iter_2.pth'}" in proc.stdout


def test_seed_helper_scripts(tiny_configs, synthetic_root, tmp_path):
    helpers = os.path.join(ICNET, "scripts")
    cfg, work = tiny_configs["ICNet"], tmp_path / "work"
    run(["bash", os.path.join(helpers, "train_1p.sh"), f"--config={cfg}",
         f"--work_dir={work}", "--device=cpu"])
    acc = dict(line.strip().split(" = ") for line in
               open(os.path.join(ICNET, "test", "output", "0", "ICNet_bs2_1p_acc.log")))
    run(["bash", os.path.join(helpers, "eval.sh"), f"--config={cfg}", f"--work_dir={work}",
         "--device=cpu"])
    ev = dict(line.strip().split(" = ") for line in
              open(os.path.join(ICNET, "test", "output", "0", "ICNet_bs2_1p_eval.log")))
    assert ev["mIoU"] == acc["mIoU"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run(["bash", os.path.join(helpers, "train_8p.sh"), f"--config={cfg}",
         f"--work_dir={tmp_path / 'work8'}", "--device=cpu", f"--master_port={port}"],
        env={"RANK_SIZE": "2"})
    acc8 = dict(line.strip().split(" = ") for line in
                open(os.path.join(ICNET, "test", "output", "0", "ICNet_bs2_2p_acc.log")))
    assert acc8["RankSize"] == "2" and 0 <= float(acc8["mIoU"]) <= 100
    assert os.path.isfile(tmp_path / "work8" / "iter_6.pth")
