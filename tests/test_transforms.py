"""The mmseg train transforms keep image and label aligned and respect ignore and
cat_max_ratio."""
import numpy as np
import pytest

from common.transforms import (Pad, PhotoMetricDistortion, RandomCrop, RandomFlip,
                               RandomResize, build_train_pipeline, label_counts,
                               rescale_size)
from common.config import DEFAULTS


def coded_pair(h=64, w=96):
    """Image whose pixels encode their label: label = (R // 16), R constant per 16x16 block."""
    label = ((np.arange(h)[:, None] // 16) * 6 + np.arange(w)[None, :] // 16).astype(np.uint8)
    img = np.stack([label * 7, label * 3, np.full_like(label, 100)], axis=-1).astype(np.uint8)
    return img, label


def test_rescale_size_keeps_ratio_like_mmcv():
    assert rescale_size(2048, 1024, (2048, 1024)) == (2048, 1024)
    assert rescale_size(2048, 1024, (1024, 512)) == (1024, 512)
    assert rescale_size(500, 375, (2048, 512)) == (683, 512)


def test_random_resize_ratio_range():
    img, label = coded_pair(128, 256)
    sizes = set()
    for seed in range(20):
        out, lab = RandomResize((256, 128), (0.5, 2.0))(img, label, np.random.default_rng(seed))
        assert out.shape[:2] == lab.shape
        assert 64 <= out.shape[0] <= 256 and out.shape[1] == round(out.shape[0] * 2)
        sizes.add(out.shape)
    assert len(sizes) > 10


def test_crop_and_flip_keep_alignment():
    img, label = coded_pair()
    rng = np.random.default_rng(0)
    for _ in range(20):
        i, l = RandomCrop((32, 32))(img, label, rng)
        i, l = RandomFlip(0.5)(i, l, rng)
        assert i.shape[:2] == l.shape == (32, 32)
        assert np.array_equal(i[..., 0] // 7, l)


def test_resize_keeps_alignment_with_nearest_labels():
    img, label = coded_pair()
    out, lab = RandomResize((96, 64), (1.5, 1.5))(img, label, np.random.default_rng(0))
    assert set(np.unique(lab)) <= set(np.unique(label))
    # away from block borders the bilinear image still encodes the nearest label
    rows, cols = np.arange(out.shape[0]) % 24, np.arange(out.shape[1]) % 24
    interior = ((rows > 3) & (rows < 20))[:, None] & ((cols > 3) & (cols < 20))[None, :]
    assert np.array_equal((out[..., 0] // 7)[interior], lab[interior])


def test_cat_max_ratio_rejects_single_class_crops():
    label = np.zeros((100, 100), dtype=np.uint8)
    label[:, 90:] = 1  # class 0 dominates most crops
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    hits = 0
    for seed in range(30):
        _, l = RandomCrop((20, 20), cat_max_ratio=0.75)(img, label, np.random.default_rng(seed))
        values, counts = np.unique(l, return_counts=True)
        hits += len(values) > 1 and counts.max() / counts.sum() < 0.75
    plain = sum(len(np.unique(RandomCrop((20, 20))(img, label, np.random.default_rng(s))[1])) > 1
                for s in range(30))
    assert hits > plain


def test_cat_max_ratio_ignores_the_ignore_index():
    label = np.full((50, 50), 255, dtype=np.uint8)
    label[:, :25] = 3
    img = np.zeros((50, 50, 3), dtype=np.uint8)
    # only one real class anywhere: every try fails, a crop is still returned
    _, l = RandomCrop((10, 10), cat_max_ratio=0.75)(img, label, np.random.default_rng(0))
    assert l.shape == (10, 10)


def test_photometric_changes_image_only():
    img, label = coded_pair()
    changed = 0
    for seed in range(10):
        i, l = PhotoMetricDistortion()(img, label, np.random.default_rng(seed))
        assert l is label and i.shape == img.shape and i.dtype == np.uint8
        changed += not np.array_equal(i, img)
    assert changed >= 5


def test_pad_uses_zero_image_and_ignore_label():
    img, label = coded_pair(40, 50)
    i, l = Pad((64, 64))(img, label)
    assert i.shape == (64, 64, 3) and l.shape == (64, 64)
    assert (i[40:] == 0).all() and (l[40:] == 255).all() and (l[:, 50:] == 255).all()
    assert np.array_equal(l[:40, :50], label)


def test_pipeline_is_a_function_of_the_seed():
    cfg = dict(DEFAULTS["data"], scale=[96, 64], crop_size=[32, 32])
    pipe = build_train_pipeline(cfg)
    img, label = coded_pair()
    a = pipe(img, label, np.random.default_rng(7))
    b = pipe(img, label, np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("seed", range(5))
def test_full_pipeline_label_values_stay_valid(seed):
    cfg = dict(DEFAULTS["data"], scale=[96, 64], crop_size=[48, 48], pad_to_crop=True)
    img, label = coded_pair()
    label[:8] = 255
    i, l = build_train_pipeline(cfg)(img, label, np.random.default_rng(seed))
    assert i.shape == (48, 48, 3) and l.shape == (48, 48)
    assert set(np.unique(l)) <= set(np.unique(label)) | {255}


def test_label_counts_equal_bincount():
    label = np.random.default_rng(0).integers(0, 19, (300, 400), dtype=np.uint8)
    label[:20] = 255
    for box in ((0, 300, 0, 400), (10, 50, 390, 400), (299, 300, 0, 1)):
        region = label[box[0]:box[1], box[2]:box[3]].ravel()
        assert np.array_equal(label_counts(label, box), np.bincount(region, minlength=256))
    huge = np.zeros((4096, 4096), dtype=np.uint8)  # 2**24 pixels: past float32's whole numbers
    huge[0, :3] = 7
    assert label_counts(huge, (0, 4096, 0, 4096))[[0, 7]].tolist() == [2 ** 24 - 3, 3]
