"""BiSeNetV2 recipes and training paths: per-head OHEM and the decode head's learning-rate
multiplier (both owned by BiSeNetV2/ alone, the multiplier surviving resume), the AMP recipe,
PaddleSeg's flag spellings."""
import glob
import os

import pytest

from BiSeNetV2 import train as bisenetv2_train
from BiSeNetV2.bisenetv2 import BiSeNetV2
from common.checkpoint import load_file
from common.config import load_config
from conftest import BISENETV2, REPO, assert_user_error, run

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

TRAIN = os.path.join(BISENETV2, "train.py")
CONFIGS = os.path.join(BISENETV2, "configs")
OWN = bisenetv2_train.OWN_KEYS


def test_recipes():
    plain = load_config(os.path.join(CONFIGS, "bisenetv2_fcn_cityscapes-1024x1024_160k.yaml"),
                        model=BiSeNetV2, own=OWN)
    assert plain["optim"]["lr"] == 0.05 and plain["schedule"]["warmup_iters"] == 1000
    assert plain["schedule"]["eta_min"] == 0.0001 and plain["data"]["batch_size"] == 4
    assert plain["loss"] == {"weights": {"decode": 1.0, "aux_0": 1.0, "aux_1": 1.0,
                                         "aux_2": 1.0, "aux_3": 1.0}, "ohem": None}
    ohem = load_config(os.path.join(CONFIGS, "bisenetv2_fcn_ohem_cityscapes-1024x1024_160k.yaml"),
                       own=OWN)
    assert ohem["loss"]["ohem"] == {"thresh": 0.7, "min_kept": 10000}
    amp = load_config(os.path.join(CONFIGS, "bisenetv2_fcn_amp_cityscapes-1024x1024_160k.yaml"),
                      own=OWN)
    assert amp["runtime"]["amp"] and amp["runtime"]["loss_scale"] == 512


def test_ohem_run_with_paddleseg_flags(tiny_configs, synthetic_root, tmp_path):
    proc = run(["python3", TRAIN, "--config", tiny_configs["BiSeNetV2"], "--device", "cpu",
                "--save_dir", str(tmp_path / "save"), "--save_interval", "2", "--do_eval",
                "--max_iters", "4", "--cfg-options", "loss.ohem={thresh: 0.7, min_kept: 50}"])
    assert sorted(f for f in os.listdir(tmp_path / "save") if f.endswith(".pth")) == \
        ["iter_2.pth", "iter_4.pth"]
    assert "Iter(val) [4/4]" in proc.stdout and "aux_3.loss_ce" in proc.stdout
    proc = run(["python3", TRAIN, "--config", tiny_configs["BiSeNetV2"], "--device", "cpu",
                "--do_eval", "--no-validate", "--save_dir", str(tmp_path / "x")], check=False)
    assert_user_error(proc, "--do_eval contradicts --no-validate")
    assert not os.path.exists(tmp_path / "x")


def test_ohem_key_is_bisenetv2s_own(tiny_config, synthetic_root, tmp_path):
    proc = run(["python3", os.path.join(REPO, "BiSeNetV1", "train.py"),
                "--config", tiny_config, "--device", "cpu", "--work-dir", str(tmp_path),
                "--cfg-options", "loss.ohem={thresh: 0.7, min_kept: 5}"], check=False)
    assert_user_error(proc, "loss.ohem is unknown")
    proc = run(["python3", TRAIN, "--device", "cpu", "--work-dir", str(tmp_path),
                "--cfg-options", "loss.ohem={aux_9: {thresh: 0.7}}"], check=False)
    assert_user_error(proc, "loss.ohem names aux_9", "decode, aux_0")


def first_terms(log_text):
    """The first Iter(train) line's per-head loss terms."""
    line = next(l for l in log_text.splitlines() if "Iter(train)" in l)
    parts = (part.split(": ") for part in line.split("  ") if ": " in part)
    return {k: float(v) for k, v in parts if k.endswith(".loss_ce")}


def test_per_head_ohem_and_decode_lr_mult_live_in_bisenetv2_and_survive_resume(
        tiny_configs, synthetic_root, tmp_path):
    """A per-head OHEM setting and a 10x decode-head learning rate are config keys of
    BiSeNetV2's own train.py: common/ knows neither; OHEM changes only the heads it names; the
    multiplier is in every checkpoint's optimizer groups and is what the resumed run uses."""
    for path in glob.glob(os.path.join(REPO, "common", "**", "*.py"), recursive=True):
        with open(path) as f:
            text = f.read().lower()
        assert "ohem" not in text and "decode_lr_mult" not in text, path
    base = (f"_base_: {tiny_configs['BiSeNetV2']}\n"
            "optim: {decode_lr_mult: 10.0}\n"
            "runtime: {checkpoint_interval: 2, eval_interval: 4, log_interval: 1}\n")
    (tmp_path / "plain.yaml").write_text(base)
    (tmp_path / "ohem.yaml").write_text(
        base + "loss: {ohem: {decode: {thresh: 0.01, min_kept: 20}, aux_2: null}}\n")
    work = tmp_path / "work"

    def train(name, *extra):
        return run(["python3", TRAIN, "--config", str(tmp_path / name), "--device", "cpu",
                    "--no-validate", *extra])

    plain = first_terms(train("plain.yaml", "--work-dir", str(tmp_path / "plain"),
                              "--max_iters", "1").stdout)
    ohem = first_terms(train("ohem.yaml", "--work-dir", str(work), "--max_iters", "2").stdout)
    assert ohem["decode.loss_ce"] < plain["decode.loss_ce"]  # hard pixels only (0/1 weights)
    for head in ("aux_0", "aux_1", "aux_2", "aux_3"):
        assert ohem[f"{head}.loss_ce"] == plain[f"{head}.loss_ce"], head
    groups = load_file(str(work / "iter_2.pth"))["optimizer"]["param_groups"]
    assert [g["lr_mult"] for g in groups] == [1.0, 10.0]
    assert groups[1]["lr"] == 10 * groups[0]["lr"]
    assert len(groups[1]["params"]) == len(list(BiSeNetV2().decode_head.parameters()))
    resumed = train("ohem.yaml", "--work-dir", str(work), "--max_iters", "4")
    assert "Resumed from" in resumed.stdout and "Iter(train) [3/4]" in resumed.stdout
    lrs = [g["lr"] for g in load_file(str(work / "iter_4.pth"))["optimizer"]["param_groups"]]
    assert lrs[1] == 10 * lrs[0] and lrs[0] != groups[0]["lr"]  # scheduled, multiplied


def test_a_shared_flag_bisenetv2_has_no_use_for_is_refused(tmp_path):
    """--pretrained loads ImageNet ResNet weights; BiSeNetV2 has no such backbone."""
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(b"")
    proc = run(["python3", TRAIN, "--pretrained", str(weights), "--work-dir",
                str(tmp_path / "w")], check=False)
    assert_user_error(proc, "--pretrained does not apply to BiSeNetV2", "drop it")
    assert not (tmp_path / "w").exists()
