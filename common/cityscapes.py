"""Cityscapes: class names, palette, the official labelId -> trainId mapping, the dataset.

Layout: ``leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png`` and
``gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png`` (made from
``*_gtFine_labelIds.png`` by ``python -m common.tools.convert_cityscapes``).
"""
import glob
import os

import numpy as np

from common.data import build_datasets, dataset_root, needed_splits, synthetic
from common.datasets import SegDataset, match_pairs
from common.errors import UserError

CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
           "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
           "bus", "train", "motorcycle", "bicycle")

PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
           (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
           (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
           (0, 80, 100), (0, 0, 230), (119, 11, 32))

# Official cityscapesScripts mapping; every other id (unlabeled, ego vehicle, ...) -> 255.
LABEL_ID_TO_TRAIN_ID = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
                        23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def train_id_lut():
    """256-entry uint8 lookup table labelId -> trainId."""
    lut = np.full(256, 255, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


IMG_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelTrainIds.png"
CONVERT_HINT = "run: python -m common.tools.convert_cityscapes {root} --nproc 8"


def find_pairs(root, split, problems=None):
    """Validated (image, labelTrainIds) pairs of one split; with a ``problems`` list, images
    without labels (and labels without images) are recorded there instead of raising."""
    if not os.path.isdir(root):
        raise UserError(f"--data_path {root} does not exist; point it at the Cityscapes root "
                        "(holding leftImg8bit/ and gtFine/) or omit it to use synthetic data")
    img_dir = os.path.join(root, "leftImg8bit", split)
    gt_dir = os.path.join(root, "gtFine", split)
    for d in (img_dir, gt_dir):
        if not os.path.isdir(d):
            raise UserError(f"{root} is not a Cityscapes tree: {d} is missing; --data_path must "
                            "be the folder holding leftImg8bit/ and gtFine/")
    images = glob.glob(os.path.join(img_dir, "*", "*" + IMG_SUFFIX))
    labels = glob.glob(os.path.join(gt_dir, "*", "*" + LABEL_SUFFIX))
    if not images:
        raise UserError(f"no *{IMG_SUFFIX} images under {img_dir}; check --data_path")
    if not labels:
        if glob.glob(os.path.join(gt_dir, "*", "*_gtFine_labelIds.png")):
            raise UserError(f"{gt_dir} has labelIds but no labelTrainIds files; "
                            + CONVERT_HINT.format(root=root))
        raise UserError(f"no *{LABEL_SUFFIX} labels under {gt_dir}; check --data_path")
    img_rel = [os.path.relpath(p, img_dir) for p in images]
    lab_rel = [os.path.relpath(p, gt_dir) for p in labels]
    pairs = match_pairs(img_rel, lab_rel, IMG_SUFFIX, LABEL_SUFFIX,
                        "every image needs its label (" + CONVERT_HINT.format(root=root) + ")",
                        problems, (img_dir, gt_dir))
    return [(os.path.join(img_dir, i), os.path.join(gt_dir, l)) for i, l in pairs]


def list_split(root, split):
    """(pairs, problems) of one split, for :func:`common.data.build_datasets`."""
    problems = []
    return find_pairs(root, split, problems), problems


def build_dataset(root, split, pipeline=None, test_transform=None):
    return SegDataset(find_pairs(root, split), pipeline, test_transform)


def label_path_for(image_path):
    """The labelTrainIds file of an image inside a Cityscapes tree (it may not exist); None
    for any other image (a photo is never its own ground truth)."""
    folder, name = os.path.split(os.path.abspath(image_path))
    marker = f"{os.sep}leftImg8bit{os.sep}"
    if not name.endswith(IMG_SUFFIX) or marker not in folder + os.sep:
        return None
    head, _, tail = (folder + os.sep).rpartition(marker)
    return os.path.join(head + f"{os.sep}gtFine{os.sep}" + tail, name.replace(IMG_SUFFIX,
                                                                             LABEL_SUFFIX))


def datasets(args, cfg, rt, model_dir):
    """The run's checked train / val sets (:func:`common.data.build_datasets`; None for
    ``--check-data``) from ``--data_path``, the config's ``paths.cityscapes_root``, or the
    synthetic Cityscapes (generated once into the cache)."""
    root = dataset_root(args.data_path, cfg, model_dir)
    if root is None:
        from common.tools.synthetic_cityscapes import ensure_synthetic_cityscapes
        root = synthetic(ensure_synthetic_cityscapes(), rt.log, "Cityscapes")
    listing = {split: list_split(root, split) for split in needed_splits(args, cfg)}
    return build_datasets(args, cfg, rt, root, listing)
