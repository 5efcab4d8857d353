"""VOC 2012 + SBD: the synthetic set, the SBD converter (PSPNet/tools/voc_aug.py), the loader
(palette PNGs, split lists, train = train + aug) and its errors, and VOC-style padding."""
import os
import shutil

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from common.datasets import PadCollate, zero_padding
from common.errors import UserError
from PSPNet.tools.synthetic_voc import SBD_TRAIN, SBD_VAL, VOC_TRAIN, VOC_VAL, ensure_synthetic_voc
from common.transforms import Normalize
from PSPNet.voc import PALETTE, build_dataset, find_pairs
from conftest import REPO, assert_user_error, run

VOC_AUG = os.path.join(REPO, "PSPNet", "tools", "voc_aug.py")


@pytest.fixture(scope="module")
def voc_root(isolated_cache):
    return ensure_synthetic_voc()


def lists(root):
    folder = os.path.join(root, "VOC2012", "ImageSets", "Segmentation")
    return {name[:-4]: open(os.path.join(folder, name)).read().split()
            for name in os.listdir(folder)}


def test_palette_is_the_voc_colour_map():
    assert PALETTE[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert PALETTE[15] == (192, 128, 128) and PALETTE[20] == (0, 64, 128)


def test_converter_lists_follow_mmseg(voc_root):
    split = lists(voc_root)
    sbd = set(SBD_TRAIN + SBD_VAL)
    assert split["aug"] == sorted(sbd - set(VOC_TRAIN) - set(VOC_VAL))
    assert split["trainaug"] == sorted((sbd | set(VOC_TRAIN)) - set(VOC_VAL))
    assert not set(split["aug"]) & set(VOC_VAL) and not set(split["aug"]) & set(VOC_TRAIN)


def test_converter_masks_equal_the_mat_files(voc_root):
    cls = os.path.join(voc_root, "VOCaug", "dataset", "cls")
    for image_id in SBD_TRAIN[:3]:
        mask = scipy.io.loadmat(os.path.join(cls, f"{image_id}.mat"))["GTcls"][0]["Segmentation"][0]
        png = Image.open(os.path.join(voc_root, "VOC2012", "SegmentationClassAug",
                                      f"{image_id}.png"))
        assert png.mode == "P" and np.array_equal(np.array(png), mask)


@pytest.mark.e2e
def test_converter_cli_is_idempotent_and_parallel(voc_root, tmp_path):
    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    shutil.rmtree(root / "VOC2012" / "SegmentationClassAug")
    os.remove(root / "VOC2012" / "ImageSets" / "Segmentation" / "aug.txt")
    proc = run(["python3", VOC_AUG, str(root), str(root / "VOCaug"), "--nproc", "2"])
    n = len(set(SBD_TRAIN + SBD_VAL))
    assert f"{n} written, 0 already present" in proc.stdout
    assert lists(str(root))["aug"] == lists(voc_root)["aug"]
    proc = run(["python3", VOC_AUG, str(root), str(root / "VOCaug")])
    assert f"0 written, {n} already present" in proc.stdout
    assert_user_error(run(["python3", VOC_AUG, str(root), str(tmp_path / "nosbd")],
                          check=False), "dataset/cls")


def test_train_is_train_plus_aug(voc_root):
    pairs = find_pairs(voc_root, "train+aug")
    assert len(pairs) == len(VOC_TRAIN) + len(lists(voc_root)["aug"])
    assert len({p[0] for p in pairs}) == len(pairs)  # no image twice, as in mmseg
    assert all("SegmentationClassAug" in l for _, l in pairs[len(VOC_TRAIN):])
    val = build_dataset(os.path.join(voc_root, "VOC2012"), "val")  # VOC2012 itself works too
    image, label, _ = val[0]
    assert image.shape[1:] == label.shape and 255 in label.unique()
    assert set(label.unique().tolist()) <= set(range(21)) | {255}


def test_missing_aug_and_missing_image_are_named(voc_root, tmp_path):
    root = tmp_path / "VOCdevkit"
    shutil.copytree(voc_root, root)
    os.remove(root / "VOC2012" / "ImageSets" / "Segmentation" / "aug.txt")
    with pytest.raises(UserError, match="voc_aug.py"):
        find_pairs(str(root), "train+aug")
    os.remove(root / "VOC2012" / "JPEGImages" / f"{VOC_VAL[0]}.jpg")
    with pytest.raises(UserError, match=f"{VOC_VAL[0]}.jpg listed in val.txt does not exist"):
        find_pairs(str(root), "val")
    with pytest.raises(UserError, match="not a VOC tree"):
        find_pairs(str(tmp_path), "val")
    with pytest.raises(UserError, match="unknown"):
        find_pairs(str(root), "trainval")


def test_batch_padding_to_crop_size_like_mmseg():
    img = torch.full((3, 40, 50), 200, dtype=torch.uint8)
    label = torch.ones(40, 50, dtype=torch.long)
    images, labels, valid = PadCollate((64, 64))([(img, label)])
    assert images.shape == (1, 3, 64, 64) and valid.tolist() == [[40, 50]]
    assert (labels[0, 40:] == 255).all() and (labels[0, :, 50:] == 255).all()
    normed = zero_padding(Normalize()(images), valid)
    assert (normed[0, :, 40:] == 0).all() and (normed[0, :, :, 50:] == 0).all()
    assert (normed[0, :, :40, :50] != 0).all()
