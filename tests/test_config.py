"""YAML recipes: _base_ inheritance, flag overrides, and errors that name the bad key."""
import glob
import inspect
import os

import pytest

from BiSeNetV1 import train as bisenetv1_train
from BiSeNetV2 import train as bisenetv2_train
from ICNet import train as icnet_train
from PSPNet import train as pspnet_train
from BiSeNetV1.bisenetv1 import BiSeNetV1
from common.config import load_config, parse_cfg_option
from common.errors import UserError
from conftest import BISENETV1, NETWORKS, REPO

CONFIGS = os.path.join(BISENETV1, "configs")


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_recipes_reproduce_mmseg():
    r50 = load_config(os.path.join(CONFIGS, "bisenetv1_r50-d32_cityscapes-1024x1024_160k.yaml"),
                      model=BiSeNetV1)
    r18 = load_config(os.path.join(CONFIGS, "bisenetv1_r18-d32_cityscapes-1024x1024_160k.yaml"),
                      model=BiSeNetV1)
    assert r50["model"]["depth"] == 50 and r18["model"]["depth"] == 18
    assert r50["optim"] == {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005}
    assert r18["optim"]["lr"] == 0.025
    for cfg in (r50, r18):
        assert cfg["schedule"] == {"max_iters": 160000, "warmup_iters": 1000,
                                   "warmup_ratio": 0.1, "power": 0.9, "eta_min": 0.0001,
                                   "warmup_epochs": 0.0}
        assert cfg["data"]["crop_size"] == [1024, 1024] and cfg["data"]["batch_size"] == 4
        assert cfg["data"]["cat_max_ratio"] == 0.75 and cfg["data"]["scale"] == [2048, 1024]
        assert cfg["loss"]["weights"] == {"decode": 1.0, "aux_0": 1.0, "aux_1": 1.0}


TRAIN_SCRIPTS = {"BiSeNetV1": bisenetv1_train, "BiSeNetV2": bisenetv2_train,
                 "ICNet": icnet_train, "PSPNet": pspnet_train}
SHIPPED = sorted(glob.glob(os.path.join(REPO, "*", "configs", "**", "*.y*ml"), recursive=True))


def test_every_config_is_found():
    assert len(SHIPPED) == 18 and {path.split(os.sep)[-3] for path in SHIPPED
                                   if path.split(os.sep)[-2] == "configs"} == set(NETWORKS)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: os.path.relpath(p, REPO))
def test_every_shipped_config_loads_as_its_train_py_reads_it(path):
    model = os.path.relpath(path, REPO).split(os.sep)[0]
    own = getattr(TRAIN_SCRIPTS[model], "OWN_KEYS", {})
    cfg = load_config(path, model=NETWORKS[model], own=own)
    network = inspect.signature(NETWORKS[model]).parameters["num_classes"].default
    assert cfg["data"]["num_classes"] == cfg["model"].get("num_classes", network)
    assert cfg["schedule"]["max_iters"] > 0 and cfg["data"]["batch_size"] >= 2
    assert cfg["data"]["ignore_index"] == 255


def test_data_classes_must_match_the_network(tmp_path):
    base = os.path.join(CONFIGS, "bisenetv1_r50-d32_synthetic-smoke.yaml")
    with pytest.raises(UserError, match="data.num_classes is 21 but the network outputs "
                                        "model.num_classes = 19"):
        load_config(write(tmp_path, f"_base_: {base}\ndata:\n  num_classes: 21\n"),
                    model=BiSeNetV1)
    cfg = load_config(write(tmp_path, f"_base_: {base}\ndata:\n  num_classes: 21\n"
                                      "model:\n  num_classes: 21\n"), model=BiSeNetV1)
    assert cfg["model"]["num_classes"] == 21


def test_overrides_and_base(tmp_path):
    base = os.path.join(CONFIGS, "bisenetv1_r50-d32_synthetic-smoke.yaml")
    path = write(tmp_path, f"_base_: {base}\ndata:\n  batch_size: 3\n")
    cfg = load_config(path, [("optim.lr", 0.1), parse_cfg_option("data.crop_size=[32, 48]")],
                      BiSeNetV1)
    assert cfg["data"]["batch_size"] == 3 and cfg["optim"]["lr"] == 0.1
    assert cfg["data"]["crop_size"] == [32, 48] and cfg["data"]["scale"] == [256, 128]


@pytest.mark.parametrize("text,match", [
    ("data:\n  bach_size: 2\n", "data.bach_size is unknown"),
    ("model:\n  detph: 18\n", "model.detph is unknown"),
    ("trainer:\n  x: 1\n", "section 'trainer' is unknown"),
    ("data:\n  batch_size: 0\n", "data.batch_size must be > 0"),
    ("data:\n  batch_size: two\n", "data.batch_size must be int"),
    ("data:\n  crop_size: [1, 2, 3]\n", "of length 2"),
    ("optim:\n  lr: -1\n", "optim.lr must be > 0"),
    ("runtime:\n  opt_level: O3\n", "runtime.opt_level must be one of"),
    ("runtime:\n  loss_scale: -4\n", "loss_scale must be 'dynamic' or a positive"),
    ("data: [1\n", "not valid YAML"),
])
def test_bad_configs_name_the_key(tmp_path, text, match):
    with pytest.raises(UserError, match=match):
        load_config(write(tmp_path, text), model=BiSeNetV1)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(UserError, match="section.key=value"):
        parse_cfg_option("data.batch_size")
    path = write(tmp_path, "data:\n  batch_size: 2\n")
    with pytest.raises(UserError, match="data.batch_size must be > 0"):
        load_config(path, [("data.batch_size", -2)], BiSeNetV1)


def test_train_py_default_config_depends_on_data_path():
    from common.cli import resolve_config, train_parser
    parser = train_parser("BiSeNetV1")
    recipe, smoke = bisenetv1_train.RECIPE, bisenetv1_train.SMOKE_RECIPE
    _, synthetic = resolve_config(parser.parse_args([]), BISENETV1, recipe, smoke, BiSeNetV1)
    _, real = resolve_config(parser.parse_args(["--data_path", "/data/cityscapes"]), BISENETV1,
                             recipe, smoke, BiSeNetV1)
    assert os.path.basename(synthetic) == smoke and os.path.basename(real) == recipe


def test_run_changing_flags_are_recorded_in_the_config():
    from common.cli import resolve_config, train_parser
    args = train_parser("BiSeNetV1").parse_args(
        ["--channels-last", "--sync_bn", "--compile", "--nan-policy", "skip", "--device-augment"])
    cfg, _ = resolve_config(args, BISENETV1, bisenetv1_train.RECIPE,
                            bisenetv1_train.SMOKE_RECIPE, BiSeNetV1)
    rt = cfg["runtime"]
    assert (rt["channels_last"], rt["sync_bn"], rt["compile"], rt["nan_policy"]) == \
        (True, True, True, "skip")
    assert cfg["data"]["device_augment"] is True
    plain, _ = resolve_config(train_parser("BiSeNetV1").parse_args([]), BISENETV1,
                              bisenetv1_train.RECIPE, bisenetv1_train.SMOKE_RECIPE, BiSeNetV1)
    assert not plain["runtime"]["channels_last"] and plain["runtime"]["nan_policy"] == "stop"


def test_model_owned_keys_are_known_only_to_their_train_py():
    """BiSeNetV2's own keys (loss.ohem, optim.decode_lr_mult) are unknown to another model's
    training config, accepted by BiSeNetV2's, and tolerated by inference (own=None)."""
    from BiSeNetV2 import train as bisenetv2_train
    from BiSeNetV2.bisenetv2 import BiSeNetV2
    path = os.path.join(os.path.dirname(BISENETV1), "BiSeNetV2", "configs",
                        "bisenetv2_fcn_ohem_cityscapes-1024x1024_160k.yaml")
    cfg = load_config(path, model=BiSeNetV2, own=bisenetv2_train.OWN_KEYS)
    assert cfg["loss"]["ohem"] == {"thresh": 0.7, "min_kept": 10000}
    assert cfg["optim"]["decode_lr_mult"] == 1.0
    with pytest.raises(UserError, match="decode_lr_mult is unknown"):
        load_config(path, model=BiSeNetV2, own={})
    assert load_config(path, model=BiSeNetV2)["loss"]["ohem"]["min_kept"] == 10000
