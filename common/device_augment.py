"""``data.device_augment: true`` (``--device-augment``): the train transforms run on the
device, so the DataLoader workers only decode.

Each sample is drawn as :mod:`common.transforms` draws it: a generator seeded by the sample's
seed, the same random calls for scale, crop (``cat_max_ratio`` retries), flip and the
photometric distortion. The pixel arithmetic is torch's: bilinear resize without corner
alignment, nearest for labels, HSV in float with OpenCV's 8-bit conventions (H in [0, 180),
S and V in [0, 255], values rounded). It is close to OpenCV's result but not bit-equal, so
crops can occasionally differ where a ``cat_max_ratio`` retry depends on a resized label.
Output: images (N, 3, crop_h, crop_w) as float 0..255 with padding 0, labels padded with the
ignore index, and each sample's valid (h, w): what :class:`common.datasets.PadCollate` gives.
"""
import numpy as np
import torch
import torch.nn.functional as F

from common.transforms import rescale_size


def _to_uint8_range(x):
    """``np.clip(x, 0, 255).astype(np.uint8)``: clip, then truncate."""
    return x.clamp(0, 255).floor()


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
    """The train pipeline of a config's ``data`` section, applied to device tensors."""

    def __init__(self, data_cfg):
        self.scale = tuple(data_cfg["scale"])
        self.ratio_range = tuple(data_cfg["ratio_range"])
        self.crop_h, self.crop_w = data_cfg["crop_size"]
        self.cat_max_ratio = data_cfg["cat_max_ratio"]
        self.ignore_index = data_cfg["ignore_index"]
        self.flip_prob = data_cfg["flip_prob"]
        self.photometric = data_cfg["photometric"]

    def _bbox(self, h, w, rng):
        y = int(rng.integers(0, max(h - self.crop_h, 0) + 1))
        x = int(rng.integers(0, max(w - self.crop_w, 0) + 1))
        return y, min(y + self.crop_h, h), x, min(x + self.crop_w, w)

    def _crop(self, img, label, rng):
        h, w = label.shape
        y1, y2, x1, x2 = self._bbox(h, w, rng)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                counts = torch.bincount(label[y1:y2, x1:x2].flatten(), minlength=256)
                counts[self.ignore_index] = 0
                kept = counts[counts > 0]
                if kept.numel() > 1 and float(kept.max()) / float(kept.sum()) < \
                        self.cat_max_ratio:
                    break
                y1, y2, x1, x2 = self._bbox(h, w, rng)
        return img[:, y1:y2, x1:x2], label[y1:y2, x1:x2]

    def _contrast(self, img, rng):
        if rng.integers(2):
            img = _to_uint8_range(img * rng.uniform(0.5, 1.5))
        return img

    def _photometric(self, img, rng):
        if rng.integers(2):
            img = _to_uint8_range(img + rng.uniform(-32, 32))
        contrast_first = rng.integers(2) == 1
        if contrast_first:
            img = self._contrast(img, rng)
        if rng.integers(2):
            hsv = rgb_to_hsv(img)
            hsv[1] = _to_uint8_range(hsv[1] * rng.uniform(0.5, 1.5))
            img = hsv_to_rgb(hsv)
        if rng.integers(2):
            hsv = rgb_to_hsv(img)
            hsv[0] = (hsv[0] + int(rng.integers(-18, 19))) % 180
            img = hsv_to_rgb(hsv)
        if not contrast_first:
            img = self._contrast(img, rng)
        return img

    def sample(self, img, label, seed):
        """One decoded sample (uint8 HxWx3 image and HxW label on the device, as
        :func:`common.datasets.decoded_tensors` gives) -> augmented float 3xhxw image in
        0..255 and int64 label."""
        rng = np.random.default_rng(seed)
        ratio = rng.uniform(*self.ratio_range)
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        w, h = rescale_size(img.shape[1], img.shape[0], target)
        image = img.permute(2, 0, 1).float()[None]
        label = label.long()
        if (h, w) != tuple(img.shape[:2]):
            image = F.interpolate(image, size=(h, w), mode="bilinear", align_corners=False)
            image = torch.round(image).clamp(0, 255)
            label = F.interpolate(label[None, None].float(), size=(h, w),
                                  mode="nearest")[0, 0].long()
        image, label = self._crop(image[0], label, rng)
        if rng.random() < self.flip_prob:
            image, label = image.flip(-1), label.flip(-1)
        if self.photometric:
            image = self._photometric(image, rng)
        return image, label

    def __call__(self, images, labels, seeds):
        """Lists of decoded device tensors and their seeds -> (images, labels, valid)."""
        n, device = len(images), images[0].device
        out = torch.zeros(n, 3, self.crop_h, self.crop_w, device=device)
        out_labels = torch.full((n, self.crop_h, self.crop_w), self.ignore_index,
                                dtype=torch.long, device=device)
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
