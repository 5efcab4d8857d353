"""mmseg's train/test transforms on numpy arrays.

A sample is ``(img, label)``: ``img`` HxWx3 uint8 RGB, ``label`` HxW uint8 (255 = ignore).
Random transforms take an explicit ``numpy.random.Generator`` so that every sample's
augmentation is a pure function of its seed (the sampler derives one per sample), which makes
data order and augmentation reproducible across resumes and worker counts. Normalisation runs
on the device, batched (:class:`Normalize`), as mmseg's data preprocessor does.
"""
import cv2
import numpy as np
import torch

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def rescale_size(width, height, scale):
    """Size that fits (w, h) inside ``scale`` keeping aspect ratio (mmcv's ``rescale_size``)."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(width, height), short_edge / min(width, height))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def resize_pair(img, label, size):
    """Bilinear for the image, nearest for the label; ``size`` is (w, h)."""
    w, h = size
    if (img.shape[1], img.shape[0]) == (w, h):
        return img, label
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST)
    return img, label


class RandomResize:
    """Scale (w, h) times a ratio drawn from ``ratio_range``, aspect ratio kept."""

    def __init__(self, scale=(2048, 1024), ratio_range=(0.5, 2.0)):
        self.scale = scale
        self.ratio_range = ratio_range

    def size_for(self, width, height, rng):
        """The (w, h) a ``width`` x ``height`` sample is resized to (draws the ratio)."""
        ratio = rng.uniform(*self.ratio_range)
        target = (int(self.scale[0] * ratio), int(self.scale[1] * ratio))
        return rescale_size(width, height, target)

    def __call__(self, img, label, rng):
        return resize_pair(img, label, self.size_for(img.shape[1], img.shape[0], rng))


class RandomCrop:
    """Crop (h, w); with ``cat_max_ratio`` < 1, up to 10 tries to find a crop whose most
    frequent non-ignore class covers less than that share (else a fresh, 11th crop)."""

    def __init__(self, crop_size, cat_max_ratio=1.0, ignore_index=255):
        self.crop_h, self.crop_w = crop_size
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index

    def _box(self, height, width, rng):
        y = int(rng.integers(0, max(height - self.crop_h, 0) + 1))
        x = int(rng.integers(0, max(width - self.crop_w, 0) + 1))
        return y, min(y + self.crop_h, height), x, min(x + self.crop_w, width)

    def choose_box(self, height, width, rng, counts_in):
        """(y1, y2, x1, x2) of the crop. ``counts_in(box)`` gives the label's pixel count per
        value 0..255 inside a box (OpenCV's histogram here, see :func:`label_counts`;
        ``torch.bincount`` on the device);
        mmseg counts with ``np.unique``, which gives the same non-zero counts."""
        box = self._box(height, width, rng)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                counts = counts_in(box)
                counts[self.ignore_index] = 0
                counts = counts[counts > 0]
                if len(counts) > 1 and float(counts.max()) / float(counts.sum()) < \
                        self.cat_max_ratio:
                    break
                box = self._box(height, width, rng)
        return box

    def __call__(self, img, label, rng):
        y1, y2, x1, x2 = self.choose_box(*label.shape, rng, lambda b: label_counts(label, b))
        return img[y1:y2, x1:x2], label[y1:y2, x1:x2]


def label_counts(label, box):
    """Pixel count per value 0..255 of the uint8 ``label`` inside ``box`` (y1, y2, x1, x2):
    OpenCV's histogram, 3x faster than ``np.bincount`` on a 1024x1024 box and exact (float32
    counts are whole numbers below 2**24; larger boxes are counted by ``np.bincount``)."""
    y1, y2, x1, x2 = box
    region = label[y1:y2, x1:x2]
    if region.size >= 2 ** 24:
        return np.bincount(region.ravel(), minlength=256)
    return cv2.calcHist([region], [0], None, [256], [0, 256]).ravel().astype(np.int64)


class RandomFlip:
    """Horizontal flip with probability ``prob``."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def draw(self, rng):
        return rng.random() < self.prob

    def __call__(self, img, label, rng):
        if self.draw(rng):
            return img[:, ::-1], label[:, ::-1]
        return img, label


def convert(img, alpha=1.0, beta=0.0):
    """mmseg's ``clip(img * alpha + beta, 0, 255).astype(uint8)`` in float32, as a lookup
    table over the 256 uint8 values: the same result, several times faster."""
    table = np.clip(np.arange(256, dtype=np.float32) * np.float32(alpha) + beta, 0, 255)
    return cv2.LUT(np.ascontiguousarray(img), table.astype(np.uint8))


def scale_saturation(img, alpha):
    hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV)
    hsv[:, :, 1] = convert(hsv[:, :, 1], alpha=alpha)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def shift_hue(img, shift):
    hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV)
    hue_table = ((np.arange(256) + shift) % 180).astype(np.uint8)
    hsv[:, :, 0] = cv2.LUT(np.ascontiguousarray(hsv[:, :, 0]), hue_table)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


class PhotoMetricDistortion:
    """Brightness, contrast (before or after the rest, at random), saturation, hue; each
    applied with probability 0.5 (mmseg's PhotoMetricDistortion). :meth:`draw` makes the
    random choices, :meth:`apply` carries them out with given pixel operations (numpy here,
    torch in :mod:`common.device_augment`)."""

    def __init__(self, brightness_delta=32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta=18):
        self.brightness_delta = brightness_delta
        self.contrast_range = contrast_range
        self.saturation_range = saturation_range
        self.hue_delta = hue_delta

    def draw(self, rng):
        """(brightness delta, contrast first?, contrast alpha, saturation alpha, hue shift),
        None for a step not applied; drawn in mmseg's order."""
        brightness = (rng.uniform(-self.brightness_delta, self.brightness_delta)
                      if rng.integers(2) else None)
        contrast_first = rng.integers(2) == 1
        contrast = None
        if contrast_first:
            contrast = rng.uniform(*self.contrast_range) if rng.integers(2) else None
        saturation = rng.uniform(*self.saturation_range) if rng.integers(2) else None
        hue = int(rng.integers(-self.hue_delta, self.hue_delta + 1)) if rng.integers(2) else None
        if not contrast_first:
            contrast = rng.uniform(*self.contrast_range) if rng.integers(2) else None
        return brightness, contrast_first, contrast, saturation, hue

    @staticmethod
    def apply(img, params, convert_op=convert, saturation_op=scale_saturation,
              hue_op=shift_hue):
        brightness, contrast_first, contrast, saturation, hue = params
        if brightness is not None:
            img = convert_op(img, beta=brightness)
        if contrast_first and contrast is not None:
            img = convert_op(img, alpha=contrast)
        if saturation is not None:
            img = saturation_op(img, saturation)
        if hue is not None:
            img = hue_op(img, hue)
        if not contrast_first and contrast is not None:
            img = convert_op(img, alpha=contrast)
        return img

    def __call__(self, img, label, rng):
        return self.apply(img, self.draw(rng)), label


class Pad:
    """Pad bottom/right up to ``size`` (h, w): image with 0, label with the ignore index."""

    def __init__(self, size, ignore_index=255):
        self.size = size
        self.ignore_index = ignore_index

    def __call__(self, img, label, rng=None):
        pad_h = max(self.size[0] - img.shape[0], 0)
        pad_w = max(self.size[1] - img.shape[1], 0)
        if pad_h == 0 and pad_w == 0:
            return img, label
        img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=0)
        label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_index)
        return img, label


class Compose:
    def __init__(self, transforms):
        self.transforms = transforms

    def __call__(self, img, label, rng):
        for t in self.transforms:
            img, label = t(img, label, rng)
        return img, label


def build_train_pipeline(data_cfg):
    """The mmseg train pipeline from a config's ``data`` section."""
    steps = [RandomResize(tuple(data_cfg["scale"]), tuple(data_cfg["ratio_range"])),
             RandomCrop(tuple(data_cfg["crop_size"]), data_cfg["cat_max_ratio"],
                        data_cfg["ignore_index"]),
             RandomFlip(data_cfg["flip_prob"])]
    if data_cfg["photometric"]:
        steps.append(PhotoMetricDistortion())
    if data_cfg["pad_to_crop"]:
        steps.append(Pad(tuple(data_cfg["crop_size"]), data_cfg["ignore_index"]))
    return Compose(steps)


class EvalResize:
    """Resize the image (not the label) to fit ``scale`` keeping ratio; None = unchanged."""

    def __init__(self, scale):
        self.scale = tuple(scale) if scale else None

    def __call__(self, img, label, rng=None):
        if self.scale is None:
            return img, label
        size = rescale_size(img.shape[1], img.shape[0], self.scale)
        resized, _ = resize_pair(img, None, size)
        return resized, label


TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # mmseg's img_ratios


class TTAResize:
    """Test-time augmentation input: the image rescaled by each ratio of its own size (mmseg's
    ``Resize(scale_factor=r, keep_ratio=True)``, which ignores the test scale), as a list."""

    def __init__(self, ratios=TTA_RATIOS):
        self.ratios = tuple(ratios)

    def __call__(self, img, label, rng=None):
        h, w = img.shape[:2]
        sizes = [rescale_size(w, h, (int(w * r + 0.5), int(h * r + 0.5))) for r in self.ratios]
        return [resize_pair(img, None, size)[0] for size in sizes], label


class Normalize:
    """Batched, on-device: uint8 NCHW RGB -> float (x - mean) / std."""

    def __init__(self, mean=MEAN, std=STD):
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, images):
        if self.mean.device != images.device:  # moved once, not every batch
            self.mean, self.std = self.mean.to(images.device), self.std.to(images.device)
        return (images.float() - self.mean) / self.std


def to_tensors(img, label):
    """HWC uint8 image -> CHW uint8 tensor; label -> uint8 tensor. Labels stay uint8 until
    they reach the device (an eighth of int64's shared memory between loader workers and the
    trainer, and of the host-to-device copy); the loss takes them as int64 there."""
    img_t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
    label_t = (torch.from_numpy(np.ascontiguousarray(label, dtype=np.uint8))
               if label is not None else None)
    return img_t, label_t
