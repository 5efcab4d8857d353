"""Checkpoint I/O: atomic writes, the latest pointer, safe loading, clear errors."""
import argparse
import os

import pytest
import torch

from BiSeNetV1.bisenetv1 import BiSeNetV1
from common.checkpoint import (latest_checkpoint, list_checkpoints, load_file,
                               load_model_weights, save_checkpoint)
from common.errors import UserError


def test_save_points_latest_and_prunes(tmp_path):
    for it in (10, 20, 30):
        save_checkpoint(str(tmp_path), it, {"meta": {"iteration": it}}, max_keep=2)
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == \
        ["iter_20.pth", "iter_30.pth"]
    assert latest_checkpoint(str(tmp_path)).endswith("iter_30.pth")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]


def test_failed_write_keeps_previous(tmp_path):
    save_checkpoint(str(tmp_path), 1, {"x": torch.ones(2)})

    class Unsaveable:
        pass
    with pytest.raises(Exception):
        save_checkpoint(str(tmp_path), 2, {"bad": Unsaveable(), "x": torch.ones(3)})
    assert latest_checkpoint(str(tmp_path)).endswith("iter_1.pth")
    assert not os.path.exists(tmp_path / "iter_2.pth")
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
    assert torch.equal(load_file(str(tmp_path / "iter_1.pth"))["x"], torch.ones(2))


def test_truncated_file_is_detected(tmp_path):
    path = save_checkpoint(str(tmp_path), 1, {"state_dict": BiSeNetV1(18).state_dict()})
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    with pytest.raises(UserError, match="truncated or corrupted"):
        load_file(path)


def test_pickled_objects_are_refused(tmp_path):
    path = str(tmp_path / "evil.pth")
    torch.save({"obj": argparse.Namespace(code="anything")}, path)
    with pytest.raises(UserError, match="beyond tensors"):
        load_file(path)


def test_other_model_or_config_is_refused(tmp_path):
    r18 = BiSeNetV1(18)
    path = save_checkpoint(str(tmp_path), 1, {"meta": {"model": "BiSeNetV1"},
                                              "state_dict": r18.state_dict()})
    with pytest.raises(UserError, match="does not fit BiSeNetV1"):
        load_model_weights(BiSeNetV1(50), path, "BiSeNetV1")
    other = save_checkpoint(str(tmp_path / "o"), 1, {"meta": {"model": "PSPNet"},
                                                     "state_dict": r18.state_dict()})
    with pytest.raises(UserError, match="written for PSPNet"):
        load_model_weights(BiSeNetV1(18), other, "BiSeNetV1")


def test_mmseg_style_checkpoint_loads_strict(tmp_path):
    model = BiSeNetV1(18)
    path = str(tmp_path / "mmseg.pth")
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": model.state_dict()}, path)
    fresh = BiSeNetV1(18)
    load_model_weights(fresh, path, "BiSeNetV1")
    key = "decode_head.conv_seg.weight"
    assert torch.equal(fresh.state_dict()[key], model.state_dict()[key])
