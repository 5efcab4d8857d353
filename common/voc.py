"""PASCAL VOC 2012 with the SBD augmented annotations ("VOC aug"), as mmseg uses it.

Layout (``--data_path`` is the VOCdevkit folder, or VOC2012 itself):
``VOC2012/JPEGImages/<id>.jpg``, ``VOC2012/SegmentationClass/<id>.png`` (palette PNGs: class
index, 255 = boundary/ignore), ``VOC2012/SegmentationClassAug/<id>.png`` (made from SBD by
``PSPNet/tools/voc_aug.py``) and ``VOC2012/ImageSets/Segmentation/{train,val,aug}.txt``.
Splits: ``train`` (train.txt, SegmentationClass), ``aug`` (aug.txt, SegmentationClassAug),
``val``; ``train+aug`` concatenates the first two, mmseg's VOC-aug training set.
"""
import os
from multiprocessing import Pool

import numpy as np
from PIL import Image

from common.checkpoint import atomic_write_bytes
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
    """The SegmentationClass PNG of a VOC JPEGImages path (it may not exist)."""
    folder, name = os.path.split(image_path)
    voc = os.path.dirname(folder)
    return os.path.join(voc, "SegmentationClass", os.path.splitext(name)[0] + ".png")


def build_dataset(root, split, pipeline=None, test_transform=None):
    return SegDataset(find_pairs(root, split), pipeline, test_transform)


def save_palette_png(path, mask):
    """Write class indices as a VOC palette PNG, atomically."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(PNG_PALETTE)
    atomic_write_bytes(path, lambda f: image.save(f, format="PNG"))


def _convert_mat(job):
    import scipy.io
    mat_path, out_path = job
    if os.path.exists(out_path):
        return False
    try:
        mask = scipy.io.loadmat(mat_path)["GTcls"][0]["Segmentation"][0]
    except Exception as exc:
        raise UserError(f"cannot read SBD annotation {mat_path} ({exc}); is it an SBD "
                        "cls/*.mat file?") from None
    save_palette_png(out_path, np.asarray(mask, dtype=np.uint8))
    return True


def convert_sbd(devkit, aug_root, nproc=1):
    """SBD ``dataset/cls/*.mat`` -> ``VOC2012/SegmentationClassAug/*.png`` and the split lists,
    as mmseg 1.2.2's ``tools/dataset_converters/voc_aug.py`` does:
    ``aug.txt`` = (SBD train + SBD val) - (VOC train + VOC val), so that mmseg's training set
    train.txt + aug.txt holds every image once (10,582 on the real data), and
    ``trainaug.txt`` = (SBD train + SBD val + VOC train) - VOC val (the same images as one
    list). Idempotent: existing PNGs are kept, lists rewritten. Returns counts."""
    voc = voc2012_dir(devkit)
    cls_dir = os.path.join(aug_root, "dataset", "cls")
    if not os.path.isdir(cls_dir):
        raise UserError(f"{cls_dir} does not exist; pass the SBD root (holding dataset/cls/)")
    out_dir = os.path.join(voc, "SegmentationClassAug")
    os.makedirs(out_dir, exist_ok=True)
    mats = sorted(f for f in os.listdir(cls_dir) if f.endswith(".mat"))
    if not mats:
        raise UserError(f"no .mat files in {cls_dir}; is this SBD's benchmark_RELEASE?")
    jobs = [(os.path.join(cls_dir, f), os.path.join(out_dir, f[:-4] + ".png")) for f in mats]
    with Pool(nproc) if nproc > 1 else _Serial() as pool:
        converted = sum(pool.map(_convert_mat, jobs))
    lists = os.path.join(voc, "ImageSets", "Segmentation")
    sbd = (read_list(os.path.join(aug_root, "dataset", "train.txt"), "is this SBD?")
           + read_list(os.path.join(aug_root, "dataset", "val.txt"), "is this SBD?"))
    voc_train = read_list(os.path.join(lists, "train.txt"), "check the VOCdevkit")
    voc_val = read_list(os.path.join(lists, "val.txt"), "check the VOCdevkit")
    aug = sorted(set(sbd) - set(voc_train) - set(voc_val))
    trainaug = sorted(set(sbd + voc_train) - set(voc_val))
    for name, ids in (("aug.txt", aug), ("trainaug.txt", trainaug)):
        atomic_write_bytes(os.path.join(lists, name),
                           lambda f, ids=ids: f.write("".join(f"{i}\n" for i in ids).encode()))
    return {"converted": converted, "skipped": len(jobs) - converted, "aug": len(aug),
            "trainaug": len(trainaug)}


class _Serial:
    """In-process stand-in for a Pool (nproc=1)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, jobs):
        return [fn(j) for j in jobs]
