"""Every seed's commands as its README types them, from the directory it types them in, on the
synthetic data placed where the seed expects it (folders a test creates inside a model
directory are removed afterwards; a test that would overwrite a user's folder is skipped).

Two commands are run with one addition, because as typed they train for days: the seed's
``bash ./test/train_full_8p.sh`` (checked with ``--dry_run``, which prints the launch line it
would run) and PaddleSeg's ``tools/train.py`` (run with ``--max_iters 1``).
"""
import glob
import json
import os
import shutil

import pytest
import torch

from common.checkpoint import save_checkpoint
from common.config import load_config
from common.logfmt import parse_log
from common.result_log import result_fields
from conftest import FIXTURES, REPO, run
from fixture_weights import fill_state_dict

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

BISENETV1, BISENETV2 = os.path.join(REPO, "BiSeNetV1"), os.path.join(REPO, "BiSeNetV2")
PSPNET, ICNET = os.path.join(REPO, "PSPNet"), os.path.join(REPO, "ICNet")


@pytest.fixture
def placed(request):
    """Create paths inside the repository for one test and remove them afterwards."""
    created = []

    def place(path, source=None):
        if os.path.exists(path):
            pytest.skip(f"{path} exists (a user's data); not touching it")
        created.append(path)
        if source:
            shutil.copytree(source, path)
        return path
    yield place
    for path in created:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def without(root, pattern):
    removed = glob.glob(os.path.join(root, pattern))
    for path in removed:
        os.remove(path)
    return len(removed)


def test_bisenetv1_seed_commands(placed, synthetic_root, tiny_config, tmp_path):
    data = placed(os.path.join(BISENETV1, "data"))
    root = shutil.copytree(synthetic_root, os.path.join(data, "cityscapes"))
    removed = without(root, "gtFine/*/*/*_labelTrainIds.png")
    proc = run(["python", "tools/convert_datasets/cityscapes.py", "data/cityscapes", "--nproc",
                "8"], cwd=BISENETV1)
    assert f"labelTrainIds: {removed} written" in proc.stdout
    assert len(glob.glob(os.path.join(root, "gtFine", "*", "*", "*_labelTrainIds.png"))) == removed
    # bash ./test/train_full_8p.sh with no argument trains the recipe on data/cityscapes
    proc = run(["bash", "./test/train_full_8p.sh", "--dry_run"], cwd=BISENETV1)
    assert proc.stdout.startswith("Using data/cityscapes, the seeds' data folder")
    line = proc.stdout.splitlines()[-1]
    assert "--nproc_per_node=8" in line and f"--data_path={root}" in line
    assert "--config=configs/bisenetv1_r50-d32_cityscapes-1024x1024_160k.yaml" in line
    assert not os.path.exists(os.path.join(BISENETV1, "test", "output", "0.running"))
    assert "queue=" in run(["bash", "-c", "source env_npu.sh; echo queue=${TASK_QUEUE_ENABLE:-}"],
                           cwd=BISENETV1).stdout
    # the seed's flags: --loss-scale -1 (dynamic), --warm_up_epochs, --prof_test
    work = tmp_path / "work"
    train = ["python3", "train.py", "--config", tiny_config, "--device", "cpu", "--work-dir",
             str(work)]
    proc = run(train + ["--loss-scale", "-1", "--warm_up_epochs", "1", "--no-validate",
                        "--max_iters", "2"], cwd=BISENETV1)
    ckpt = torch.load(work / "iter_2.pth", weights_only=True)
    cfg = ckpt["meta"]["config"]
    assert cfg["runtime"]["loss_scale"] == "dynamic" and cfg["schedule"]["warmup_epochs"] == 1.0
    # 30 training images, 2 per step: an epoch is 15 iterations of warm-up from 0.1x
    lr = parse_log(proc.stdout.splitlines())["train"][0]["lr"]
    assert lr == pytest.approx(cfg["optim"]["lr"] * (0.1 + 0.9 * 1 / 15), rel=1e-3)
    proc = run(train + ["--prof_test", "--checkpoint", str(work / "iter_2.pth")], cwd=BISENETV1)
    assert "Iter(val)" in proc.stdout and (work / "profile_test_trace.json").is_file()


def test_pspnet_seed_commands(placed, tmp_path):
    from PSPNet.tools.synthetic_voc import ensure_synthetic_voc
    data = placed(os.path.join(PSPNET, "data"))
    devkit = shutil.copytree(ensure_synthetic_voc(), os.path.join(data, "VOCdevkit"))
    shutil.rmtree(os.path.join(devkit, "VOC2012", "SegmentationClassAug"))
    os.remove(os.path.join(devkit, "VOC2012", "ImageSets", "Segmentation", "aug.txt"))
    proc = run(["python", "tools/convert_datasets/voc_aug.py", "data/VOCdevkit",
                "data/VOCdevkit/VOCaug", "--nproc", "8"], cwd=PSPNET)
    assert "SegmentationClassAug:" in proc.stdout
    assert os.listdir(os.path.join(devkit, "VOC2012", "SegmentationClassAug"))
    assert os.path.isfile(os.path.join(devkit, "VOC2012", "ImageSets", "Segmentation", "aug.txt"))
    assert "queue=" in run(["bash", "-c", "source env_npu.sh; echo queue=${TASK_QUEUE_ENABLE:-}"],
                           cwd=PSPNET).stdout
    # the seed's 16-per-device x 8 recipe names its result log PSPNet_bs16_8p_acc.log, key 8 mIoU
    log = ["Run  model: PSPNet  world_size: 8  batch_per_device: 16  max_iters: 10000",
           "Iter(train) [10000/10000]  lr: 1.0000e-04  loss: 0.2000  time: 0.5000",
           "Iter(val) [10000/10000]  mode: whole  aAcc: 94.71  mIoU: 77.04  mAcc: 86.52  images/s: 9.00",
           "Summary  iters: 9995  images/s: 117.80  iter_time_ms: 1086.00  train_time_s: 10854.57"]
    name, fields = result_fields(parse_log(log), "PSPNet", "acc", 11000, "mIoU")
    assert name == "PSPNet_bs16_8p_acc" and fields[7] == ("mIoU", "77.04")
    assert dict(fields)["BatchSize"] == 16


@pytest.fixture(scope="module")
def icnet_weights():
    with open(os.path.join(FIXTURES, "ICNet.json")) as f:
        state = fill_state_dict(json.load(f)["state_dict"])
    cfg = load_config(os.path.join(ICNET, "configs", "icnet_r50-d8_synthetic-smoke.yaml"))
    return {"meta": {"model": "ICNet", "iteration": 1, "config": cfg}, "state_dict": state}


def test_icnet_seed_commands(placed, icnet_weights, synthetic_root):
    proc = run(["python3", "-m", "pip", "install", "-r", "requirements.txt"], cwd=ICNET)
    assert "error" not in proc.stderr.lower()
    ckpt_dir = placed(os.path.join(ICNET, "ckpt"))
    save_checkpoint(ckpt_dir, 80000, icnet_weights)
    placed(os.path.join(ICNET, "demo_out"))
    proc = run(["python", "demo.py"], cwd=ICNET)  # first val frame of icnet_eval.yaml's data
    first = sorted(glob.glob(os.path.join(synthetic_root, "leftImg8bit", "val", "*", "*.png")))[0]
    stem = os.path.basename(first)[:-4]
    for suffix in ("pred", "overlay", "source", "label"):
        assert os.path.isfile(os.path.join(ICNET, "demo_out", f"{stem}_{suffix}.png")), proc.stdout
    placed(os.path.join(ICNET, "ICNet.onnx"))
    proc = run(["python", "pth2onnx.py"], cwd=ICNET)
    assert "input actual_input_1 1x3x1024x2048" in proc.stdout
    assert os.path.isfile(os.path.join(ICNET, "ICNet.onnx"))


def test_bisenetv2_paddleseg_commands(placed, synthetic_root):
    data = placed(os.path.join(BISENETV2, "data"))
    root = shutil.copytree(synthetic_root, os.path.join(data, "cityscapes"))
    removed = without(root, "gtFine/*/*/*_labelTrainIds.png")
    run(["python", "tools/data/convert_cityscapes.py", "--cityscapes_path", "data/cityscapes",
         "--num_workers", "8"], cwd=BISENETV2)
    assert len(glob.glob(os.path.join(root, "gtFine", "*", "*", "*_labelTrainIds.png"))) == removed
    run(["python", "tools/data/create_dataset_list.py", "data/cityscapes", "--type",
         "cityscapes", "--separator", ","], cwd=BISENETV2)
    with open(os.path.join(root, "train.txt")) as f:
        lines = f.read().splitlines()
    image, label = lines[0].split(",")
    assert len(lines) == 30 and image.startswith("leftImg8bit/train/")
    assert label.endswith("_gtFine_labelTrainIds.png") and os.path.isfile(os.path.join(root, label))
    assert os.path.isfile(os.path.join(root, "val.txt")) and os.path.isfile(os.path.join(root, "test.txt"))
    placed(os.path.join(BISENETV2, "output"))
    proc = run(["python", "tools/train.py", "--config",
                "configs/bisenet/bisenet_cityscapes_1024x1024_160k.yml", "--do_eval", "--use_vdl",
                "--save_interval", "500", "--save_dir", "output", "--max_iters", "1"],
               cwd=BISENETV2)
    assert "Iter(val) [1/1]" in proc.stdout and "using the synthetic" not in proc.stdout
    output = os.path.join(BISENETV2, "output")
    assert os.path.isfile(os.path.join(output, "iter_1.pth"))
    assert glob.glob(os.path.join(output, "tensorboard", "events.out.tfevents.*"))
