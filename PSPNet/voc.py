"""PASCAL VOC 2012 with the SBD augmented annotations ("VOC aug"), as mmseg uses it.

Layout (``--data_path`` is the VOCdevkit folder, or VOC2012 itself):
``VOC2012/JPEGImages/<id>.jpg``, ``VOC2012/SegmentationClass/<id>.png`` (palette PNGs: class
index, 255 = boundary/ignore), ``VOC2012/SegmentationClassAug/<id>.png`` (made from SBD by
``PSPNet/tools/voc_aug.py``) and ``VOC2012/ImageSets/Segmentation/{train,val,aug}.txt``.
Splits: ``train`` (train.txt, SegmentationClass), ``aug`` (aug.txt, SegmentationClassAug),
``val``; ``train+aug`` concatenates the first two, mmseg's VOC-aug training set.
"""
import os

import numpy as np
from PIL import Image

from common.checkpoint import atomic_write_bytes
from common.data import build_datasets, needed_splits, synthetic
from common.datasets import SegDataset
from common.errors import UserError

CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
           "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
           "sheep", "sofa", "train", "tvmonitor")


def _voc_colour(index):
    """The VOC colour map: bits of the index interleaved into the high bits of R, G, B."""
    r = g = b = 0
    for shift in range(8):
        r |= ((index >> 0) & 1) << (7 - shift)
        g |= ((index >> 1) & 1) << (7 - shift)
        b |= ((index >> 2) & 1) << (7 - shift)
        index >>= 3
    return r, g, b


PALETTE = tuple(_voc_colour(i) for i in range(len(CLASSES)))
PNG_PALETTE = [c for i in range(256) for c in _voc_colour(i)]  # 255 -> (224, 224, 192)

ANNOTATION_DIRS = {"train": "SegmentationClass", "val": "SegmentationClass",
                   "aug": "SegmentationClassAug"}
AUG_HINT = ("run: python PSPNet/tools/voc_aug.py VOCdevkit VOCdevkit/VOCaug --nproc 8 "
            "(SBD into SegmentationClassAug + aug.txt)")


def voc2012_dir(root):
    """The VOC2012 folder of a VOCdevkit (or VOC2012) path, or a UserError."""
    if not os.path.isdir(root):
        raise UserError(f"--data_path {root} does not exist; point it at VOCdevkit (holding "
                        "VOC2012/) or omit it to use synthetic data")
    for candidate in (os.path.join(root, "VOC2012"), root):
        if os.path.isdir(os.path.join(candidate, "JPEGImages")):
            return candidate
    raise UserError(f"{root} is not a VOC tree: no VOC2012/JPEGImages; --data_path must be the "
                    "VOCdevkit folder")


def read_list(path, hint):
    if not os.path.isfile(path):
        raise UserError(f"split list {path} is missing; {hint}")
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def find_pairs(root, split, problems=None):
    """(image, label) paths of ``train``, ``aug``, ``val`` or ``+``-joined splits. A missing
    image or label raises, or with a ``problems`` list is recorded there and skipped."""
    voc = voc2012_dir(root)
    pairs = []
    for part in split.split("+"):
        if part not in ANNOTATION_DIRS:
            raise UserError(f"VOC split {part!r} is unknown; use train, aug, val or train+aug")
        hint = AUG_HINT if part == "aug" else "check --data_path"
        ids = read_list(os.path.join(voc, "ImageSets", "Segmentation", f"{part}.txt"), hint)
        ann_dir = os.path.join(voc, ANNOTATION_DIRS[part])
        if part == "aug" and not os.path.isdir(ann_dir):
            raise UserError(f"{ann_dir} is missing; {AUG_HINT}")
        for image_id in ids:
            img = os.path.join(voc, "JPEGImages", f"{image_id}.jpg")
            label = os.path.join(ann_dir, f"{image_id}.png")
            missing = None
            if not os.path.isfile(img):
                missing = (f"image {img} listed in {part}.txt does not exist; restore it or "
                           "remove the id from the list")
            elif not os.path.isfile(label):
                missing = (f"image {img} has no label ({label} missing); "
                           + (AUG_HINT if part == "aug" else "restore it"))
            if missing is None:
                pairs.append((img, label))
            elif problems is None:
                raise UserError(missing)
            else:
                problems.append(missing)
    return pairs


def label_path_for(image_path):
    """The SegmentationClass PNG of a VOC JPEGImages path (it may not exist); None for any
    other image."""
    folder, name = os.path.split(os.path.abspath(image_path))
    if os.path.basename(folder) != "JPEGImages":
        return None
    voc = os.path.dirname(folder)
    return os.path.join(voc, "SegmentationClass", os.path.splitext(name)[0] + ".png")


def list_split(root, split):
    """(pairs, problems) of one split, for :func:`common.data.build_datasets`."""
    problems = []
    return find_pairs(root, split, problems), problems


def build_dataset(root, split, pipeline=None, test_transform=None):
    return SegDataset(find_pairs(root, split), pipeline, test_transform)


def save_palette_png(path, mask):
    """Write class indices as a VOC palette PNG, atomically."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(PNG_PALETTE)
    atomic_write_bytes(path, lambda f: image.save(f, format="PNG"))


def datasets(args, cfg, rt):
    """The run's checked train / val sets (:func:`common.data.build_datasets`; None for
    ``--check-data``) from ``--data_path`` (the VOCdevkit) or the synthetic VOC + SBD."""
    if args.data_path:
        root = os.path.abspath(args.data_path)
    else:
        from PSPNet.tools.synthetic_voc import ensure_synthetic_voc
        root = synthetic(ensure_synthetic_voc(), rt.log, "VOC")
    return build_datasets(args, cfg, rt, root,
                          {split: list_split(root, split) for split in needed_splits(args, cfg)})
