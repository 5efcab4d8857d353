"""Device-side train transforms: the same draws as the CPU pipeline, OpenCV's HSV within
rounding, image and label kept aligned, and training with --device-augment runs."""
import cv2
import numpy as np
import pytest
import torch

from common.datasets import decoded_tensors
from common.device_augment import DeviceAugment, hsv_to_rgb, rgb_to_hsv
from common.transforms import build_train_pipeline, to_tensors
from conftest import BISENETV1, run

DATA = {"scale": [256, 128], "ratio_range": [1.0, 1.0], "crop_size": [64, 96],
        "cat_max_ratio": 0.75, "ignore_index": 255, "flip_prob": 0.5, "photometric": True,
        "pad_to_crop": False}


def striped(h=128, w=256):
    """Vertical stripes of 4 colours; the label is the stripe index (255 on the last row)."""
    colours = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], np.uint8)
    stripe = np.repeat((np.arange(w) * 4 // w)[None], h, axis=0).astype(np.uint8)
    label = stripe.copy()
    label[-1] = 255
    return colours[stripe], label


def decoded(img, label):
    """One sample as the decode-only loader gives it: ([HWC uint8], [HW uint8])."""
    image_t, label_t = decoded_tensors(img, label)
    return [image_t], [label_t]


def test_hsv_matches_opencv_within_rounding():
    img = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    ours = rgb_to_hsv(torch.from_numpy(img).permute(2, 0, 1).float())
    theirs = torch.from_numpy(cv2.cvtColor(img, cv2.COLOR_RGB2HSV)).permute(2, 0, 1).float()
    hue_gap = (ours[0] - theirs[0]).abs()
    assert torch.minimum(hue_gap, 180 - hue_gap).max() <= 1
    assert (ours[1:] - theirs[1:]).abs().max() <= 1
    back = hsv_to_rgb(theirs)
    expected = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_RGB2HSV), cv2.COLOR_HSV2RGB)
    assert (back - torch.from_numpy(expected).permute(2, 0, 1).float()).abs().max() <= 2


@pytest.mark.parametrize("seed", range(6))
def test_same_draws_as_the_cpu_pipeline(seed):
    img, label = striped()
    cpu_img, cpu_label = to_tensors(*build_train_pipeline(DATA)(img, label,
                                                                np.random.default_rng(seed)))
    images, labels, valid = DeviceAugment(DATA)(*decoded(img, label), [seed])
    h, w = valid[0].tolist()
    assert (h, w) == tuple(cpu_label.shape)
    assert torch.equal(labels[0, :h, :w], cpu_label)  # same crop, same flip
    gap = (images[0, :, :h, :w] - cpu_img.float()).abs()
    assert gap.max() <= 4 and gap.mean() < 1  # 8-bit rounding of the HSV round trip only


def test_resized_samples_keep_image_and_label_aligned():
    data = dict(DATA, ratio_range=[0.5, 2.0], photometric=False)
    img, label = striped()
    colours = torch.tensor([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]])
    augment = DeviceAugment(data)
    for seed in range(8):
        images, labels, valid = augment(*decoded(img, label), [seed])
        h, w = valid[0].tolist()
        lab, pix = labels[0, :h, :w], images[0, :, :h, :w].permute(1, 2, 0)
        inside = lab != 255
        # away from stripe borders each pixel has its class's colour
        interior = inside.clone()
        for shift in (1, 2):  # two pixels away from a border: resampling offsets differ
            interior[:, shift:] &= lab[:, shift:] == lab[:, :-shift]
            interior[:, :-shift] &= lab[:, :-shift] == lab[:, shift:]
        assert interior.any()
        assert (pix[interior] - colours[lab[interior]].float()).abs().max() <= 1
        assert (labels[0, h:] == 255).all() and (labels[0, :, w:] == 255).all()


@pytest.mark.e2e
def test_training_with_device_augment_and_channels_last(tiny_config, synthetic_root, tmp_path):
    proc = run(["python3", f"{BISENETV1}/train.py", "--config", tiny_config, "--work-dir",
                str(tmp_path), "--device", "cpu", "--device-augment", "--channels-last",
                "--no-validate",
                "--max_iters", "4", "--workers", "1"])
    assert "Iter(train) [4/4]" in proc.stdout and "nan" not in proc.stdout.split("loss:")[1][:20]
