"""ImageNet weights in torchvision and mmcv key formats load into the ResNet backbones."""
import pytest
import torch

from common.errors import UserError
from common.pretrained import load_pretrained_backbone
from common.resnet import ResNet, resnet_v1c


def save(tmp_path, obj, name):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


def test_torchvision_format_into_plain_resnet(tmp_path):
    source = ResNet(depth=50)
    state = dict(source.state_dict(), **{"fc.weight": torch.zeros(1000, 2048),
                                        "fc.bias": torch.zeros(1000)})
    target = ResNet(depth=50)
    report = load_pretrained_backbone(target, save(tmp_path, state, "tv.pth"))
    assert report.source_format == "torchvision"
    assert not report.missing and not report.unused and not report.shape_mismatch
    assert torch.equal(target.layer4[2].conv3.weight, source.layer4[2].conv3.weight)


def test_mmcv_v1c_format_with_wrapper_and_prefix(tmp_path):
    source = resnet_v1c(depth=50)
    state = {"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}
    state["state_dict"]["head.fc.weight"] = torch.zeros(1000, 2048)
    target = resnet_v1c(depth=50, strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4),
                        contract_dilation=True)
    report = load_pretrained_backbone(target, save(tmp_path, state, "mmcv.pth"))
    assert report.source_format == "mmcv" and len(report.loaded) == len(source.state_dict())
    assert torch.equal(target.stem[0].weight, source.stem[0].weight)


def test_mismatch_is_reported_not_hidden(tmp_path):
    tv = ResNet(depth=50).state_dict()
    report = load_pretrained_backbone(resnet_v1c(depth=50), save(tmp_path, tv, "tv.pth"))
    assert "conv1.weight" in report.unused and "stem.0.weight" in report.missing
    assert "not in file" in report.summary() and report.loaded
    with pytest.raises(UserError, match="no tensor that fits"):
        load_pretrained_backbone(ResNet(depth=18), save(tmp_path, {"x": torch.ones(1)}, "x.pth"))
