"""The decoded-data cache (train.py --prepare-data): the same samples as decoding the PNGs for a
seeded run, read without decoding, a changed source file detected, resumable, and refused
when the disk is too small."""
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from common import cityscapes, datasets, decoded
from common.config import load_config
from common.data import build_train_set
from common.errors import UserError
from conftest import BISENETV1, run

TRAIN = os.path.join(BISENETV1, "train.py")


@pytest.fixture
def dataset_copy(synthetic_root, tmp_path):
    root = tmp_path / "cityscapes"
    shutil.copytree(synthetic_root, root)
    return str(root)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "decoded"
    monkeypatch.setenv("SEGZOO_DECODED", str(folder))
    return folder


def prepare(root, cache, *extra):
    return run([sys.executable, TRAIN, "--data_path", root, "--prepare-data", "--device", "cpu",
                "--work-dir", os.path.join(os.path.dirname(root), "work"), *extra],
               env={"SEGZOO_DECODED": str(cache)})


def samples(root, keys):
    cfg = load_config(os.path.join(BISENETV1, "configs", "bisenetv1_r50-d32_synthetic-smoke.yaml"))
    train = build_train_set(cfg, cityscapes.find_pairs(root, "train"))
    return [train[key] for key in keys]


def test_prepared_data_gives_the_same_samples_without_decoding(dataset_copy, cache,
                                                               monkeypatch):
    keys = [(i % 5, 1000 + i) for i in range(10)]
    from_png = samples(dataset_copy, keys)
    proc = prepare(dataset_copy, cache, "--workers", "2")
    pairs = len(cityscapes.find_pairs(dataset_copy, "train")) + len(
        cityscapes.find_pairs(dataset_copy, "val"))
    assert f"{2 * pairs} files decoded" in proc.stdout
    assert len(list(cache.rglob("*.npy"))) == 2 * pairs

    def no_decoding(path):
        raise AssertionError(f"{path} was decoded although it is prepared")
    monkeypatch.setattr(datasets, "read_image", no_decoding)
    monkeypatch.setattr(datasets, "read_label", no_decoding)
    from_cache = samples(dataset_copy, keys)
    for (img_a, label_a), (img_b, label_b) in zip(from_png, from_cache):
        assert torch.equal(img_a, img_b) and torch.equal(label_a, label_b)


def test_a_changed_source_file_is_read_from_the_file(dataset_copy, cache):
    prepare(dataset_copy, cache)
    label_path = cityscapes.find_pairs(dataset_copy, "train")[0][1]
    old = datasets.read_label(label_path)
    new = np.where(old == 255, 0, (old + 1) % 19).astype(np.uint8)
    Image.fromarray(new).save(label_path)
    os.utime(label_path, ns=(10**18, 10**18))  # a new mtime even on a coarse clock
    assert np.array_equal(decoded.load(label_path, datasets.read_label), new)
    proc = prepare(dataset_copy, cache)  # resumable: only the changed file is decoded again
    assert "--prepare-data: 1 files decoded" in proc.stdout
    assert np.array_equal(np.load(decoded.entry_for(label_path)), new)


def test_not_enough_disk_is_refused_before_writing(dataset_copy, cache, monkeypatch):
    monkeypatch.setattr(decoded.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    image, label = cityscapes.find_pairs(dataset_copy, "train")[0]
    with pytest.raises(UserError, match="SEGZOO_DECODED"):
        decoded.prepare([(image, datasets.read_image), (label, datasets.read_label)],
                        [10**6, 10**6], 1, print)
    assert not list(cache.rglob("*.npy"))
