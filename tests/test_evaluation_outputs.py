"""What an evaluation leaves a user: per-class JSON/CSV next to the checkpoint, --show-dir
pictures, TTA through the eval scripts, distributed evaluation on an odd-sized dataset equal to
one process, curves from the log, and optional TensorBoard scalars."""
import csv
import glob
import json
import os
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

from common.cityscapes import PALETTE
from common.errors import UserError
from common.visualize import IGNORE_COLOUR, WRONG_COLOUR
from conftest import BISENETV1, run
from test_scripts import free_port, result_log, script

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

TRAIN = os.path.join(BISENETV1, "train.py")


@pytest.fixture(scope="module")
def odd_dataset(synthetic_root, tmp_path_factory):
    """The synthetic Cityscapes with 9 validation images (one pair removed)."""
    root = tmp_path_factory.mktemp("odd") / "cityscapes"
    shutil.copytree(synthetic_root, root)
    image = sorted(glob.glob(str(root / "leftImg8bit" / "val" / "*" / "*.png")))[-1]
    os.unlink(image)
    os.unlink(image.replace("leftImg8bit", "gtFine", 1).replace(
        "_leftImg8bit.png", "_gtFine_labelTrainIds.png"))
    return root


@pytest.fixture(scope="module")
def trained(odd_dataset, tiny_config, tmp_path_factory):
    """6 tiny iterations on the odd dataset, with TensorBoard scalars."""
    work = tmp_path_factory.mktemp("eval_work")
    run(["python3", TRAIN, "--config", tiny_config, "--data_path", str(odd_dataset),
         "--work-dir", str(work), "--device", "cpu", "--tensorboard"])
    return work


def val_pairs(root):
    images = sorted(glob.glob(str(root / "leftImg8bit" / "val" / "*" / "*.png")))
    return [(p, p.replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit.png",
                                                            "_gtFine_labelTrainIds.png"))
            for p in images]


def test_per_class_files_and_pictures(trained, odd_dataset, tiny_config, tmp_path):
    ckpt_dir = tmp_path / "elsewhere"
    ckpt_dir.mkdir()
    shutil.copy(trained / "iter_6.pth", ckpt_dir / "iter_6.pth")
    show = tmp_path / "show"
    proc = run(["python3", TRAIN, "--config", tiny_config, "--data_path", str(odd_dataset),
                "--work-dir", str(tmp_path / "w"), "--device", "cpu", "--eval-only",
                "--checkpoint", str(ckpt_dir / "iter_6.pth"), "--show-dir", str(show)])
    assert "mode: whole" in proc.stdout and "Per-class results (whole inference)" in proc.stdout
    record = json.loads((ckpt_dir / "eval_iter_6_whole.json").read_text())
    assert record["mode"] == "whole" and len(record["per_class"]) == 19
    assert record["per_class"][0]["class"] == "road"
    cm = np.array(record["confusion_matrix"])
    assert cm.shape == (19, 19) and cm.sum() > 0
    with open(ckpt_dir / "eval_iter_6_whole.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["class", "IoU", "Acc"] and len(rows) == 21
    assert rows[-1] == ["mean", f"{record['mIoU']:.2f}", f"{record['mAcc']:.2f}"]
    assert [r[0] for r in rows[1:-1]] == [c["class"] for c in record["per_class"]]

    pairs = val_pairs(odd_dataset)
    pictures = sorted(os.listdir(show))
    assert len(pictures) == len(pairs) == 9
    predicted = np.zeros((19, 19), np.int64)
    lut = {colour: index for index, colour in enumerate(PALETTE)}
    for image_path, label_path in pairs:
        strip = np.array(Image.open(show / os.path.basename(image_path)).convert("RGB"))
        label = np.array(Image.open(label_path))
        h, w = label.shape
        assert strip.shape == (h, 4 * w, 3)
        source, truth, pred_rgb, errors = (strip[:, i * w:(i + 1) * w] for i in range(4))
        np.testing.assert_array_equal(source, np.array(Image.open(image_path).convert("RGB")))
        valid = label != 255
        palette = np.array(PALETTE, np.uint8)
        np.testing.assert_array_equal(truth[valid], palette[label[valid]])
        assert (truth[~valid] == IGNORE_COLOUR).all() and (errors[~valid] == IGNORE_COLOUR).all()
        pred = np.array([lut[tuple(c)] for c in pred_rgb.reshape(-1, 3)]).reshape(h, w)
        wrong = valid & (pred != label)
        assert (errors[wrong] == WRONG_COLOUR).all()
        assert not (errors[valid & ~wrong] == WRONG_COLOUR).all(axis=-1).any()
        np.add.at(predicted, (label[valid], pred[valid]), 1)
    # the pictures show exactly the predictions that were counted
    np.testing.assert_array_equal(predicted, cm)


def test_tta_eval_scripts_one_and_two_processes_agree(trained, odd_dataset, tiny_config, tmp_path):
    ckpt = trained / "iter_6.pth"
    args = [f"--config={tiny_config}", f"--data_path={odd_dataset}", f"--checkpoint={ckpt}",
            "--device=cpu", "--tta"]
    script("train_eval_1p.sh", *args)
    values = dict(result_log(0, "BiSeNetV1_bs2_1p_eval"))
    assert values["EvalMode"] == "whole-tta"
    one = json.loads((trained / "eval_iter_6_whole-tta.json").read_text())
    show = tmp_path / "show 2p"
    script("train_eval_8p.sh", *args, f"--show_dir={show}", f"--master_port={free_port()}",
           env={"RANK_SIZE": "2"})
    two = json.loads((trained / "eval_iter_6_whole-tta.json").read_text())
    assert dict(result_log(0, "BiSeNetV1_bs2_2p_eval"))["mIoU"] == values["mIoU"]
    # 9 images over 2 ranks: every image counted once, the same matrix as one process
    assert two["confusion_matrix"] == one["confusion_matrix"]
    assert len(os.listdir(show)) == 9
    whole = json.loads((trained / "eval_iter_6_whole.json").read_text())
    assert one["confusion_matrix"] != whole["confusion_matrix"]  # TTA did change predictions


def test_curves_from_the_training_log(trained, tmp_path):
    out = tmp_path / "curves.png"
    proc = run([sys.executable, "-m", "common.tools.plot_log", str(trained / "train_rank0.log"),
                "--out", str(out)])
    assert str(out) in proc.stdout
    picture = np.array(Image.open(out).convert("RGB"))
    assert picture.shape[0] > 400 and picture.shape[1] > 600
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 50  # lines, text, not blank
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    proc = run([sys.executable, "-m", "common.tools.plot_log", str(empty)], check=False)
    assert proc.returncode == 2 and "no 'Iter(train)' lines" in proc.stderr


def test_tensorboard_scalars(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(trained / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/images_per_s", "train/decode.loss_ce",
            "val/mIoU", "val/aAcc"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4, 6]


def test_tensorboard_missing_is_one_line(monkeypatch, tmp_path):
    from common.tensorboard_log import open_sink
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(UserError, match="pip install tensorboard"):
        open_sink(True, str(tmp_path), True)
    assert open_sink(False, str(tmp_path), True) is None
