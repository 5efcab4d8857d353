"""BiSeNetV2 recipes and training paths: OHEM in a real run, the AMP recipe, PaddleSeg's flag
spellings."""
import os

from bisenetv2 import SPEC
from common.config import load_config
from conftest import BISENETV2, assert_user_error, run

TRAIN = os.path.join(BISENETV2, "train.py")
CONFIGS = os.path.join(BISENETV2, "configs")


def test_recipes():
    plain = load_config(os.path.join(CONFIGS, "bisenetv2_fcn_cityscapes-1024x1024_160k.yaml"),
                        model_builder=SPEC.build_model)
    assert plain["optim"]["lr"] == 0.05 and plain["schedule"]["warmup_iters"] == 1000
    assert plain["schedule"]["eta_min"] == 0.0001 and plain["data"]["batch_size"] == 4
    assert plain["loss"] == {"weights": {"decode": 1.0, "aux_0": 1.0, "aux_1": 1.0,
                                         "aux_2": 1.0, "aux_3": 1.0}, "sampler": None}
    ohem = load_config(os.path.join(CONFIGS, "bisenetv2_fcn_ohem_cityscapes-1024x1024_160k.yaml"))
    assert ohem["loss"]["sampler"] == {"thresh": 0.7, "min_kept": 10000}
    amp = load_config(os.path.join(CONFIGS, "bisenetv2_fcn_amp_cityscapes-1024x1024_160k.yaml"))
    assert amp["runtime"]["amp"] and amp["runtime"]["loss_scale"] == 512


def test_ohem_run_with_paddleseg_flags(tiny_configs, synthetic_root, tmp_path):
    proc = run(["python3", TRAIN, "--config", tiny_configs["BiSeNetV2"], "--device", "cpu",
                "--save_dir", str(tmp_path / "save"), "--save_interval", "2", "--do_eval",
                "--max_iters", "4", "--cfg-options", "loss.sampler={thresh: 0.7, min_kept: 50}"])
    assert sorted(f for f in os.listdir(tmp_path / "save") if f.endswith(".pth")) == \
        ["iter_2.pth", "iter_4.pth"]
    assert "Iter(val) [4/4]" in proc.stdout and "aux_3.loss_ce" in proc.stdout
    proc = run(["python3", TRAIN, "--config", tiny_configs["BiSeNetV2"], "--device", "cpu",
                "--do_eval", "--no-validate", "--save_dir", str(tmp_path / "x")], check=False)
    assert_user_error(proc, "--do_eval contradicts --no-validate")
    assert not os.path.exists(tmp_path / "x")


def test_sampler_on_a_model_without_one(tiny_config, synthetic_root, tmp_path):
    proc = run(["python3", os.path.join(os.path.dirname(BISENETV2), "BiSeNetV1", "train.py"),
                "--config", tiny_config, "--device", "cpu", "--work-dir", str(tmp_path),
                "--cfg-options", "loss.sampler={thresh: 0.7, min_kept: 5}"], check=False)
    assert_user_error(proc, "has no pixel sampler")
