"""Dataset plumbing shared by Cityscapes and VOC: image/label pair lists, decoding with
file-named errors (or reading the decoded-data cache, :mod:`common.decoded`, where it holds a
file), the infinite seeded sampler, collation.

Training items are addressed as ``dataset[(index, seed)]``: the sampler hands out a seed per
sample and the random transforms draw only from it. Evaluation items are ``dataset[index]``.
"""
import os

import cv2
import numpy as np
import torch
from PIL import Image

from common import decoded
from common.errors import UserError
from common.stop_signals import ignore_stop_signals
from common.transforms import to_tensors


# The fastest decoders on PyPI, measured on this project's data (python -m common.tools.benchmark
# --only data): libspng (pyspng) for PNG and libjpeg-turbo via simplejpeg for JPEG decode
# 1.2x and 1.4x faster than OpenCV, pixel for pixel the same; OpenCV when they are missing.
try:
    import pyspng as _PYSPNG
except ImportError:
    _PYSPNG = None
try:
    import simplejpeg as _SIMPLEJPEG
except ImportError:
    _SIMPLEJPEG = None


def _fast_decode(path):
    """RGB uint8 HxWx3 from pyspng / simplejpeg, or None to fall back to OpenCV."""
    ext = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        data = f.read()
    if ext == ".png" and _PYSPNG is not None:
        img = _PYSPNG.load(data)
        if img.dtype != np.uint8:
            return None
        if img.ndim == 2:
            return np.repeat(img[:, :, None], 3, axis=2)
        return img[:, :, :3] if img.shape[2] >= 3 else None
    if ext in (".jpg", ".jpeg") and _SIMPLEJPEG is not None:
        return _SIMPLEJPEG.decode_jpeg(data, colorspace="RGB")
    return None


def read_image(path):
    """RGB uint8 HxWx3, or a UserError naming the file."""
    try:
        img = _fast_decode(path)
    except Exception:
        img = None  # OpenCV decides, and names the file if it cannot read it either
    if img is not None:
        return img
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise UserError(f"cannot decode image {path} (unreadable or truncated); replace or "
                        "remove it and its label")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_label(path):
    """Class-index label (uint8 HxW) from a grey or palette PNG, or a UserError."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise UserError(f"label {path} is mode {im.mode}, expected a single-channel or "
                                "palette PNG of class indices")
            return np.array(im, dtype=np.uint8)
    except UserError:
        raise
    except Exception as exc:
        raise UserError(f"cannot decode label {path} ({exc}); replace or remove it and its "
                        "image") from None


def image_size(path, kind):
    """(w, h) from the file header only."""
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:
        raise UserError(f"cannot read {kind} {path} ({exc}); replace or remove it") from None


class SegDataset(torch.utils.data.Dataset):
    """A list of (image, label) paths plus a train pipeline or a test-time resize."""

    def __init__(self, pairs, pipeline=None, test_transform=None, check_sizes=True):
        self.pairs = pairs
        self.pipeline = pipeline
        self.test_transform = test_transform
        if check_sizes:
            self.check_sizes()

    def check_sizes(self):
        """Header-only pass: every image and label readable and of the same size."""
        for img_path, label_path in self.pairs:
            isize, lsize = image_size(img_path, "image"), image_size(label_path, "label")
            if isize != lsize:
                raise UserError(f"image {img_path} is {isize[0]}x{isize[1]} but its label "
                                f"{label_path} is {lsize[0]}x{lsize[1]}; fix or remove the pair")

    def __len__(self):
        return len(self.pairs)

    def load(self, index):
        img_path, label_path = self.pairs[index]
        img = decoded.load(img_path, read_image)
        label = decoded.load(label_path, read_label)
        if img.shape[:2] != label.shape:
            raise UserError(f"image {img_path} and label {label_path} differ in size")
        return img, label

    def __getitem__(self, key):
        if isinstance(key, tuple):
            index, seed = key
            img, label = self.load(index)
            if self.pipeline is None:  # decode only: common.device_augment does the rest
                return decoded_tensors(img, label) + (seed,)
            img, label = self.pipeline(img, label, np.random.default_rng(seed))
            return to_tensors(img, label)
        img, label = self.load(key)
        if self.test_transform is not None:
            img, label = self.test_transform(img, label)
        if isinstance(img, list):  # TTAResize: one image per scale
            return [to_tensors(i, None)[0] for i in img], to_tensors(img[0], label)[1], key
        img_t, label_t = to_tensors(img, label)
        return img_t, label_t, key


def decoded_tensors(img, label):
    """HWC uint8 image and uint8 label as tensors sharing the arrays' memory (no copy: the
    device does the layout change and the widening)."""
    return torch.from_numpy(img), torch.from_numpy(label)


def match_pairs(images, labels, image_suffix, label_suffix, hint, problems=None,
                folders=("", "")):
    """Pair ``*image_suffix`` and ``*label_suffix`` files by shared stem. A lone file on either
    side raises an error naming it, or with a ``problems`` list, each one is recorded there
    (paths under ``folders``: image folder, label folder) and left out."""
    img_by_stem = {p[:-len(image_suffix)]: p for p in images}
    lab_by_stem = {p[:-len(label_suffix)]: p for p in labels}
    lone_img = sorted(set(img_by_stem) - set(lab_by_stem))
    lone_lab = sorted(set(lab_by_stem) - set(img_by_stem))
    if problems is not None:
        problems += [f"image {os.path.join(folders[0], img_by_stem[s])} has no label"
                     for s in lone_img]
        problems += [f"label {os.path.join(folders[1], lab_by_stem[s])} has no image"
                     for s in lone_lab]
    elif lone_img:
        raise UserError(f"image {img_by_stem[lone_img[0]]} has no label "
                        f"({len(lone_img)} such images); {hint}")
    elif lone_lab:
        raise UserError(f"label {lab_by_stem[lone_lab[0]]} has no image "
                        f"({len(lone_lab)} such labels); {hint}")
    return [(img_by_stem[s], lab_by_stem[s]) for s in sorted(img_by_stem) if s in lab_by_stem]


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless stream of ``(index, seed)``: epoch ``e`` is a permutation seeded by
    ``(seed, e)``; global position ``p`` belongs to rank ``p % world_size`` and carries its own
    augmentation seed. Starting at ``start_iter`` skips exactly the samples already used, so
    a resumed run sees the same data in the same order with the same augmentation."""

    def __init__(self, size, batch_size, rank=0, world_size=1, seed=0, start_iter=0):
        self.size = size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start = start_iter * batch_size

    def _epoch_order(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self):
        k = self.start
        epoch, order = -1, None
        while True:
            position = k * self.world_size + self.rank
            if position // self.size != epoch:
                epoch = position // self.size
                order = self._epoch_order(epoch)
            sample_seed = int(np.random.SeedSequence([self.seed, position]).generate_state(1)[0])
            yield int(order[position % self.size]), sample_seed
            k += 1


def loader_worker_init(_worker_id=None):
    """A DataLoader worker leaves stopping to the trainer and decodes on one OpenCV thread:
    the workers are the parallelism (8 ranks x 4 workers with OpenCV's default pool of one
    thread per core would oversubscribe the host many times over)."""
    ignore_stop_signals()
    cv2.setNumThreads(1)


class PadCollate:
    """Stack training samples padded to ``size`` (h, w): labels with the ignore index, images
    with 0 plus their valid (h, w), so the trainer (``common.training.device_batch``) can zero the padding after normalisation.
    That is mmseg's ``SegDataPreProcessor(size=crop_size)``: pad value 0 in normalised space."""

    def __init__(self, size, ignore_index=255):
        self.size = tuple(size)
        self.ignore_index = ignore_index

    def __call__(self, batch):
        h, w = self.size
        images = torch.zeros(len(batch), 3, h, w, dtype=torch.uint8)
        labels = torch.full((len(batch), h, w), self.ignore_index, dtype=torch.uint8)
        valid = torch.zeros(len(batch), 2, dtype=torch.long)
        for i, (img, label) in enumerate(batch):
            ih, iw = img.shape[-2:]
            images[i, :, :ih, :iw] = img
            labels[i, :ih, :iw] = label
            valid[i] = torch.tensor([ih, iw])
        return images, labels, valid


def zero_padding(images, valid):
    """Set pixels outside each image's valid (h, w) to 0 (after normalisation)."""
    full_h, full_w = images.shape[-2:]
    for i, (h, w) in enumerate(valid.tolist()):
        if h < full_h:
            images[i, :, h:] = 0
        if w < full_w:
            images[i, :, :, w:] = 0
    return images
