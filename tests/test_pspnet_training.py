"""PSPNet recipes, --pretrained ImageNet weights (mmcv v1c and torchvision formats), and
--sync_bn."""
import os

import pytest
import torch

from common.config import load_config
from common.distributed import DistInfo
from common.resnet import ResNet, resnet_v1c
from common.training import Runtime, to_sync_bn
from conftest import PSPNET, run
from PSPNet.pspnet import PSPNet

pytestmark = pytest.mark.e2e  # runs the project's commands: the full suite, not the unit tier

CONFIGS = os.path.join(PSPNET, "configs")


def test_recipes():
    mmseg = load_config(os.path.join(CONFIGS, "pspnet_r50-d8_voc12aug-512x512_20k.yaml"),
                        model=PSPNet)
    assert mmseg["data"]["num_classes"] == 21
    assert mmseg["data"]["train_split"] == "train+aug" and mmseg["data"]["crop_size"] == [512, 512]
    assert mmseg["data"]["scale"] == [2048, 512] and mmseg["data"]["test_scale"] == [2048, 512]
    assert mmseg["optim"]["lr"] == 0.01 and mmseg["schedule"]["max_iters"] == 20000
    assert mmseg["schedule"]["warmup_iters"] == 0 and mmseg["schedule"]["eta_min"] == 0.0001
    assert mmseg["loss"]["weights"] == {"decode": 1.0, "aux": 0.4}
    seed = load_config(os.path.join(CONFIGS, "pspnet_r50-d8_voc12aug-512x512_seed-8p-10k.yaml"))
    assert seed["data"]["batch_size"] == 16 and seed["schedule"]["max_iters"] == 10000


def pspnet_run(tiny_configs, work, *extra):
    return run(["python3", os.path.join(PSPNET, "train.py"), "--config", tiny_configs["PSPNet"],
                "--device", "cpu", "--work-dir", str(work), "--max_iters", "1",
                "--no-validate", *extra])


def test_pretrained_both_formats_are_reported(tiny_configs, tmp_path):
    mmcv = {"state_dict": {f"backbone.{k}": v for k, v in resnet_v1c(depth=50).state_dict().items()}}
    torch.save(mmcv, tmp_path / "resnet50_v1c.pth")
    proc = pspnet_run(tiny_configs, tmp_path / "a", "--pretrained", str(tmp_path / "resnet50_v1c.pth"))
    assert "pretrained (mmcv format): loaded 330 tensors; not in file: 0" in proc.stdout
    torch.save(ResNet(depth=50).state_dict(), tmp_path / "resnet50_tv.pth")
    proc = pspnet_run(tiny_configs, tmp_path / "b", "--pretrained", str(tmp_path / "resnet50_tv.pth"))
    line = [l for l in proc.stdout.splitlines() if "pretrained (torchvision format)" in l][0]
    assert "not in file: 18 (e.g. stem.0.weight" in line and "unused from file: 6" in line


def test_sync_bn(tiny_configs, tmp_path):
    logged = []
    model = PSPNet()
    def runtime(device):
        return Runtime("PSPNet", torch.device(device), DistInfo(0, 2, 0), None, "", logged.append)
    assert to_sync_bn(model, runtime("cpu")) is model
    assert "gloo backend (CPU) has no SyncBatchNorm" in logged[-1]
    synced = to_sync_bn(model, runtime("cuda"))
    assert isinstance(synced.backbone.bn1 if hasattr(synced.backbone, "bn1")
                      else synced.backbone.stem[1], torch.nn.SyncBatchNorm)
    proc = pspnet_run(tiny_configs, tmp_path / "c", "--sync_bn")
    assert "a single process has nothing to synchronise" in proc.stdout
