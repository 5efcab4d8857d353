"""``data.device_augment: true`` (``--device-augment``): the train transforms run on the
device, so the DataLoader workers only decode.

The random choices are made by :mod:`common.transforms`' own transform objects from the
sample's seed (scale, crop with ``cat_max_ratio`` retries, flip, photometric parameters), so
both pipelines draw alike. The pixel arithmetic is torch's: bilinear resize without corner
alignment, nearest for labels, HSV in float with OpenCV's 8-bit conventions (H in [0, 180),
S and V in [0, 255], values rounded). It is close to OpenCV's result but not bit-equal, so
crops can occasionally differ where a ``cat_max_ratio`` retry depends on a resized label.
Output: images (N, 3, crop_h, crop_w) as float 0..255 with padding 0, labels padded with the
ignore index, and each sample's valid (h, w): what :class:`common.datasets.PadCollate` gives.
"""
import numpy as np
import torch
import torch.nn.functional as F

from common.transforms import (PhotoMetricDistortion, RandomCrop, RandomFlip, RandomResize,
                               build_train_pipeline)


def _to_uint8_range(x):
    """``np.clip(x, 0, 255).astype(np.uint8)``: clip, then truncate."""
    return x.clamp(0, 255).floor()


def convert(img, alpha=1.0, beta=0.0):
    """:func:`common.transforms.convert` on a float tensor in 0..255."""
    return _to_uint8_range(img * alpha + beta)


def scale_saturation(img, alpha):
    hsv = rgb_to_hsv(img)
    hsv[1] = _to_uint8_range(hsv[1] * alpha)
    return hsv_to_rgb(hsv)


def shift_hue(img, shift):
    hsv = rgb_to_hsv(img)
    hsv[0] = (hsv[0] + shift) % 180
    return hsv_to_rgb(hsv)


def rgb_to_hsv(img):
    """3xHxW float RGB in 0..255 -> OpenCV 8-bit HSV (H 0..179, S and V 0..255), rounded."""
    r, g, b = img[0], img[1], img[2]
    v, _ = img.max(dim=0)
    low, _ = img.min(dim=0)
    span = v - low
    s = torch.where(v > 0, span * 255 / v.clamp(min=1e-6), torch.zeros_like(v))
    safe = span.clamp(min=1e-6)
    h = torch.where(v == r, 60 * (g - b) / safe,
                    torch.where(v == g, 120 + 60 * (b - r) / safe, 240 + 60 * (r - g) / safe))
    h = torch.where(span > 0, h, torch.zeros_like(h))
    h = torch.where(h < 0, h + 360, h)
    return torch.stack([torch.round(h / 2) % 180, torch.round(s), v])


def hsv_to_rgb(hsv):
    """Inverse of :func:`rgb_to_hsv` (OpenCV's HSV2RGB for 8-bit images), rounded."""
    h, s, v = hsv[0] * 2, hsv[1] / 255, hsv[2]
    c = v * s
    sector = h / 60
    x = c * (1 - (sector % 2 - 1).abs())
    zero = torch.zeros_like(c)
    index = sector.floor().long() % 6
    rgb_by_sector = [(c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c),
                     (c, zero, x)]
    out = torch.zeros_like(hsv)
    for k, (r, g, b) in enumerate(rgb_by_sector):
        mask = index == k
        out[0] = torch.where(mask, r, out[0])
        out[1] = torch.where(mask, g, out[1])
        out[2] = torch.where(mask, b, out[2])
    return torch.round(out + (v - c)).clamp(0, 255)


class DeviceAugment:
    """The train pipeline of a config's ``data`` section, applied to device tensors: the
    pipeline's own transform objects make the random choices, torch does the pixels."""

    def __init__(self, data_cfg):
        steps = {type(t): t for t in build_train_pipeline(data_cfg).transforms}
        self.resize, self.crop = steps[RandomResize], steps[RandomCrop]
        self.flip, self.photometric = steps[RandomFlip], steps.get(PhotoMetricDistortion)
        self.crop_size = (self.crop.crop_h, self.crop.crop_w)
        self.ignore_index = data_cfg["ignore_index"]

    def sample(self, img, label, seed):
        """One decoded sample (uint8 HxWx3 image and HxW label on the device, as
        :func:`common.datasets.decoded_tensors` gives) -> augmented float 3xhxw image in
        0..255 and int64 label."""
        rng = np.random.default_rng(seed)
        w, h = self.resize.size_for(img.shape[1], img.shape[0], rng)
        image, label = img.permute(2, 0, 1).float()[None], label.long()
        if (h, w) != tuple(img.shape[:2]):
            image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
            image = torch.round(image).clamp(0, 255)
            label = F.interpolate(label[None, None].float(), size=(h, w),
                                  mode="nearest")[0, 0].long()
        y1, y2, x1, x2 = self.crop.choose_box(h, w, rng, lambda b: torch.bincount(
            label[b[0]:b[1], b[2]:b[3]].flatten(), minlength=256))
        image, label = image[0, :, y1:y2, x1:x2], label[y1:y2, x1:x2]
        if self.flip.draw(rng):
            image, label = image.flip(-1), label.flip(-1)
        if self.photometric is not None:
            image = self.photometric.apply(image, self.photometric.draw(rng), convert,
                                           scale_saturation, shift_hue)
        return image, label

    def __call__(self, images, labels, seeds):
        """Lists of decoded device tensors and their seeds -> (images, labels, valid)."""
        n, device = len(images), images[0].device
        out = torch.zeros(n, 3, *self.crop_size, device=device)
        out_labels = torch.full((n, *self.crop_size), self.ignore_index, dtype=torch.long,
                                device=device)
        valid = torch.zeros(n, 2, dtype=torch.long)
        for i, (img, label, seed) in enumerate(zip(images, labels, seeds)):
            image, label = self.sample(img, label, seed)
            h, w = label.shape
            out[i, :, :h, :w] = image
            out_labels[i, :h, :w] = label
            valid[i] = torch.tensor([h, w])
        return out, out_labels, valid


def list_collate(batch):
    """Decoded samples stay separate (their sizes may differ): (images, labels, seeds)."""
    images, labels, seeds = zip(*batch)
    return list(images), list(labels), list(seeds)
