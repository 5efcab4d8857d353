"""Synthetic Cityscapes layout, the labelIds -> labelTrainIds converter, and the dataset's
one-line errors for broken trees."""
import glob
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from common.cityscapes import LABEL_ID_TO_TRAIN_ID, build_dataset, train_id_lut
from common.tools.convert_cityscapes import convert_cityscapes
from common.errors import UserError
from common.tools.synthetic_cityscapes import SPLITS, ensure_synthetic_cityscapes, generate
from common.transforms import EvalResize
from conftest import REPO, assert_user_error, run


def test_official_mapping_every_id():
    lut = train_id_lut()
    expected = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    assert LABEL_ID_TO_TRAIN_ID == expected
    for label_id in range(256):
        assert lut[label_id] == expected.get(label_id, 255)


def test_synthetic_layout_and_names(synthetic_root):
    for split, cities in SPLITS.items():
        for city, count in cities.items():
            images = sorted(glob.glob(os.path.join(synthetic_root, "leftImg8bit", split, city,
                                                   f"{city}_*_*_leftImg8bit.png")))
            assert len(images) == count
            for img in images:
                stem = os.path.basename(img)[:-len("_leftImg8bit.png")]
                gt = os.path.join(synthetic_root, "gtFine", split, city, stem)
                assert os.path.isfile(gt + "_gtFine_labelIds.png")
                assert os.path.isfile(gt + "_gtFine_labelTrainIds.png")


def test_synthetic_is_deterministic_and_covers_all_classes(synthetic_root, tmp_path):
    generate(str(tmp_path / "again"))
    a = sorted(glob.glob(os.path.join(synthetic_root, "leftImg8bit", "*", "*", "*.png")))
    b = sorted(glob.glob(str(tmp_path / "again" / "leftImg8bit" / "*" / "*" / "*.png")))
    assert [os.path.relpath(p, synthetic_root) for p in a] == \
        [os.path.relpath(p, tmp_path / "again") for p in b]
    assert np.array_equal(np.array(Image.open(a[0])), np.array(Image.open(b[0])))
    counts = np.zeros(256, dtype=np.int64)
    for p in glob.glob(os.path.join(synthetic_root, "gtFine", "train", "*", "*TrainIds.png")):
        counts += np.bincount(np.array(Image.open(p)).ravel(), minlength=256)
    assert (counts[:19] > 0).all() and counts[255] > 0


def test_converter_output_and_idempotence(synthetic_root, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(synthetic_root, root)
    for p in glob.glob(str(root / "gtFine" / "*" / "*" / "*_labelTrainIds.png")):
        os.remove(p)
    written, skipped = convert_cityscapes(str(root), nproc=2)
    assert written == sum(sum(c.values()) for c in SPLITS.values()) and skipped == 0
    src = sorted(glob.glob(str(root / "gtFine" / "train" / "*" / "*_labelIds.png")))[0]
    ids = np.array(Image.open(src))
    train = np.array(Image.open(src.replace("_labelIds", "_labelTrainIds")))
    assert np.array_equal(train, train_id_lut()[ids])
    assert convert_cityscapes(str(root), nproc=1) == (0, written)  # second run: nothing to do


@pytest.mark.e2e
def test_converter_cli(synthetic_root):
    proc = run(["python3", "-m", "common.tools.convert_cityscapes", synthetic_root, "--nproc", "2"])
    assert "already present" in proc.stdout
    assert_user_error(run(["python3", "-m", "common.tools.convert_cityscapes", "/nonexistent",
                           "--nproc", "2"], check=False), "gtFine")


def make_tree(synthetic_root, tmp_path):
    root = tmp_path / "cs"
    shutil.copytree(synthetic_root, root)
    return root


def first(root, pattern):
    return sorted(glob.glob(str(root / pattern)))[0]


def test_errors_for_broken_trees(synthetic_root, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_dataset(str(tmp_path / "missing"), "train")
    with pytest.raises(UserError, match="not a Cityscapes tree"):
        build_dataset(str(tmp_path), "train")
    root = make_tree(synthetic_root, tmp_path)
    for p in glob.glob(str(root / "gtFine" / "val" / "*" / "*_labelTrainIds.png")):
        os.remove(p)
    with pytest.raises(UserError, match="convert_cityscapes"):
        build_dataset(str(root), "val")
    os.remove(first(root, "gtFine/train/*/*_labelTrainIds.png"))
    with pytest.raises(UserError, match="has no label"):
        build_dataset(str(root), "train")


def test_label_without_image_and_size_mismatch(synthetic_root, tmp_path):
    root = make_tree(synthetic_root, tmp_path)
    os.remove(first(root, "leftImg8bit/train/*/*.png"))
    with pytest.raises(UserError, match="has no image"):
        build_dataset(str(root), "train")
    root2 = make_tree(synthetic_root, tmp_path / "b")
    img = first(root2, "leftImg8bit/val/*/*.png")
    Image.open(img).resize((100, 50)).save(img)
    with pytest.raises(UserError, match="100x50 but its label"):
        build_dataset(str(root2), "val")


def test_truncated_image_named_at_load(synthetic_root, tmp_path):
    root = make_tree(synthetic_root, tmp_path)
    img = first(root, "leftImg8bit/val/*/*.png")
    data = open(img, "rb").read()
    open(img, "wb").write(data[: len(data) // 2])
    ds = build_dataset(str(root), "val", test_transform=EvalResize(None))
    with pytest.raises(UserError, match=os.path.basename(img)):
        for i in range(len(ds)):
            ds[i]


def test_synthetic_cli_prints_root(isolated_cache):
    proc = run(["python3", "-m", "common.tools.synthetic_cityscapes"], cwd=REPO)
    assert proc.stdout.strip() == ensure_synthetic_cityscapes()
