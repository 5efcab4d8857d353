"""Deterministic synthetic PASCAL VOC 2012 + SBD in the real on-disk layout.

    python3 -m PSPNet.tools.synthetic_voc [--out DIR]   # prints the VOCdevkit root

Writes ``VOCdevkit/VOC2012/{JPEGImages/*.jpg, SegmentationClass/*.png (palette, 255 object
borders), ImageSets/Segmentation/{train,val}.txt}`` and the SBD release under
``VOCdevkit/VOCaug/dataset/{cls/*.mat (GTcls.Segmentation), train.txt, val.txt}``; then the
real converter (:func:`PSPNet.tools.voc_aug.convert_sbd`, the logic of PSPNet/tools/voc_aug.py) makes
SegmentationClassAug and aug.txt. Images are 160-200 x 120-150 pixels (VOC sizes vary, so Pad
is exercised): a textured background with one to three objects of the 20 classes, each class
with its own colour and stripe texture. SBD's lists overlap VOC's the way the real ones do (some
SBD ids are VOC val images and must not enter aug.txt).
"""
import os
import sys

import numpy as np
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.errors import user_errors  # noqa: E402
from common.cache import cache_dir  # noqa: E402
from common.tools.synthetic import (class_texture, ensure_generated, generator_cli,  # noqa: E402
                                    render)
from PSPNet.tools.voc_aug import convert_sbd  # noqa: E402
from PSPNet.voc import PALETTE, save_palette_png  # noqa: E402

VERSION = 1
VOC_TRAIN = [f"2007_{i:06d}" for i in range(16)]
VOC_VAL = [f"2007_{100 + i:06d}" for i in range(12)]
SBD_ONLY = [f"2008_{i:06d}" for i in range(32)]
SBD_TRAIN = SBD_ONLY[:24] + VOC_VAL[:2]
SBD_VAL = SBD_ONLY[24:] + VOC_TRAIN[:3]


def default_root():
    return os.path.join(cache_dir(), f"voc_synthetic_v{VERSION}", "VOCdevkit")


def texture_of(label):
    if label == 255:
        return np.array([224.0, 224.0, 192.0]), (0.0, 0.0), 0.0
    colour = PALETTE[label] if label else (90, 110, 80)  # background: muted, textured
    return class_texture(label, colour)


def draw_objects(rng, height, width):
    """Class-index mask: background 0 with 1-3 objects (ellipse, box or triangle)."""
    yy, xx = np.mgrid[0:height, 0:width]
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(rng.integers(1, 4)):
        label = int(rng.integers(1, 21))
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.12, 0.35) * height, rng.uniform(0.12, 0.35) * width
        shape = rng.integers(3)
        if shape == 0:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        elif shape == 1:
            inside = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        else:
            inside = (yy <= cy + ry) & (yy - (cy - ry) >= 2 * ry * abs(xx - cx) / rx)
        mask[inside] = label
    return mask


def with_borders(mask):
    """VOC-style annotation: 255 on a 2-pixel band where classes meet."""
    out = mask.copy()
    edge = np.zeros(mask.shape, dtype=bool)
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[1:] |= mask[:-1] != mask[1:]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    edge[:, 1:] |= mask[:, :-1] != mask[:, 1:]
    out[edge] = 255
    return out


def write_list(path, ids):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.writelines(f"{i}\n" for i in ids)


def generate(devkit):
    import scipy.io
    voc = os.path.join(devkit, "VOC2012")
    sbd = os.path.join(devkit, "VOCaug", "dataset")
    for folder in (os.path.join(voc, "JPEGImages"), os.path.join(voc, "SegmentationClass"),
                   os.path.join(sbd, "cls")):
        os.makedirs(folder)
    rng = np.random.default_rng(7)
    voc_ids = set(VOC_TRAIN + VOC_VAL)
    for image_id in sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL)):
        height, width = int(rng.integers(120, 151)), int(rng.integers(160, 201))
        mask = draw_objects(rng, height, width)
        Image.fromarray(render(mask, texture_of, rng)).save(
            os.path.join(voc, "JPEGImages", f"{image_id}.jpg"), quality=92)
        if image_id in voc_ids:
            save_palette_png(os.path.join(voc, "SegmentationClass", f"{image_id}.png"),
                             with_borders(mask))
        if image_id in SBD_TRAIN or image_id in SBD_VAL:
            present = np.unique(mask[mask > 0]).astype(np.uint8).reshape(-1, 1)
            scipy.io.savemat(os.path.join(sbd, "cls", f"{image_id}.mat"),
                             {"GTcls": {"Segmentation": mask, "CategoriesPresent": present}})
    lists = os.path.join(voc, "ImageSets", "Segmentation")
    write_list(os.path.join(lists, "train.txt"), VOC_TRAIN)
    write_list(os.path.join(lists, "val.txt"), VOC_VAL)
    write_list(os.path.join(sbd, "train.txt"), SBD_TRAIN)
    write_list(os.path.join(sbd, "val.txt"), SBD_VAL)


def convert(devkit):
    convert_sbd(devkit, os.path.join(devkit, "VOCaug"))


def ensure_synthetic_voc(root=None):
    """Generate (once) and convert the synthetic VOC + SBD; return the VOCdevkit root."""
    return ensure_generated(root or default_root(), generate, convert)


def main(argv=None):
    generator_cli(argv, "Generate the synthetic VOC 2012 + SBD set.", ensure_synthetic_voc, default_root())


if __name__ == "__main__":
    with user_errors():
        main()
