"""Deterministic synthetic Cityscapes in the real on-disk layout.

    python -m common.tools.synthetic_cityscapes [--out DIR]   # prints the dataset root

Street-like scenes at 256x128 (a 1/8-scale Cityscapes frame): sky over buildings and
vegetation, a road with sidewalks, and objects (cars, people, poles, signs, ...) drawn as
shapes. Each of the 19 train classes has its own colour and stripe texture, so a network can
learn them; ego-vehicle and unlabeled regions map to ignore. Splits train (30 frames), val (10)
and test (5, whose labels are all "unlabeled" as in the real release). Files:
``leftImg8bit/{split}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png`` and
``gtFine/{split}/{city}/..._gtFine_labelIds.png``; the trainIds files are then made by the real
converter (``common.tools.convert_cityscapes``). Generated once into a cache folder
(``$SEGZOO_CACHE``, default ``~/.cache/segzoo``), atomically, so concurrent runs are safe.
"""
import os
import sys

import numpy as np
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.cityscapes import LABEL_ID_TO_TRAIN_ID, PALETTE  # noqa: E402
from common.tools.convert_cityscapes import convert_cityscapes  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.cache import cache_dir  # noqa: E402
from common.tools.synthetic import (class_texture, ensure_generated, generator_cli,  # noqa: E402
                                    render)

VERSION = 2
WIDTH, HEIGHT = 256, 128
SPLITS = {"train": {"aachen": 10, "bochum": 10, "bremen": 10},
          "val": {"frankfurt": 5, "lindau": 5},
          "test": {"berlin": 3, "bielefeld": 2}}
SEEDS = {"train": 0, "val": 1000, "test": 2000}
UNLABELED_SPLITS = ("test",)  # as in the real release: the test labels are all 0 (unlabeled)

# label ids of the Cityscapes classes drawn below
SKY, BUILDING, VEGETATION, ROAD, SIDEWALK, TERRAIN = 23, 11, 21, 7, 8, 22
WALL, FENCE, POLE, LIGHT, SIGN = 12, 13, 17, 19, 20
PERSON, RIDER, CAR, TRUCK, BUS, TRAIN, MOTORCYCLE, BICYCLE = 24, 25, 26, 27, 28, 31, 32, 33
UNLABELED, EGO_VEHICLE = 0, 1


def default_root():
    return os.path.join(cache_dir(), f"cityscapes_synthetic_v{VERSION}")


class Canvas:
    """A labelIds map with shape-drawing helpers (later shapes paint over earlier ones)."""

    def __init__(self, rng):
        self.rng = rng
        self.ids = np.zeros((HEIGHT, WIDTH), dtype=np.uint8)
        self.yy, self.xx = np.mgrid[0:HEIGHT, 0:WIDTH]

    def rect(self, x0, y0, x1, y1, label):
        self.ids[max(int(y0), 0):max(int(y1), 0), max(int(x0), 0):max(int(x1), 0)] = label

    def ellipse(self, cx, cy, rx, ry, label):
        mask = ((self.xx - cx) / rx) ** 2 + ((self.yy - cy) / ry) ** 2 <= 1.0
        self.ids[mask] = label


def draw_scene(rng):
    """One street scene as a labelIds map."""
    c = Canvas(rng)
    r = rng.uniform
    horizon = int(r(0.38, 0.5) * HEIGHT)
    c.rect(0, 0, WIDTH, horizon, SKY)
    x = 0
    while x < WIDTH:  # skyline of buildings with gaps showing sky
        w = int(r(20, 60))
        if rng.random() < 0.8:
            c.rect(x, horizon - r(15, horizon - 5), x + w, horizon, BUILDING)
        x += w
    for _ in range(rng.integers(1, 4)):
        c.ellipse(r(0, WIDTH), horizon - r(5, 20), r(10, 25), r(8, 16), VEGETATION)
    c.rect(0, horizon, WIDTH, HEIGHT, ROAD)
    below = c.yy >= horizon
    # sidewalks: wedges on both sides that widen towards the camera
    depth = (c.yy - horizon) / (HEIGHT - horizon)
    left_edge = r(0.3, 0.45) * WIDTH * (1 - depth) - 0.2 * WIDTH * depth
    right_edge = WIDTH - r(0.3, 0.45) * WIDTH * (1 - depth) + 0.2 * WIDTH * depth
    c.ids[below & ((c.xx < left_edge) | (c.xx > right_edge))] = SIDEWALK
    if rng.random() < 0.6:
        c.ids[below & (c.xx < left_edge - 10) & (c.yy < horizon + 12)] = TERRAIN
    if rng.random() < 0.5:
        c.rect(r(0, 60), horizon - 8, r(80, 140), horizon + 2, rng.choice([WALL, FENCE]))
    if rng.random() < 0.5:
        c.rect(r(150, 200), horizon - 6, r(220, WIDTH), horizon + 3, rng.choice([WALL, FENCE]))
    for _ in range(rng.integers(1, 4)):  # poles carrying a sign or a traffic light
        px, top = r(5, WIDTH - 5), horizon - r(20, 40)
        c.rect(px - 1.5, top, px + 1.5, horizon + r(10, 25), POLE)
        if rng.random() < 0.5:
            c.ellipse(px, top, 5, 5, SIGN)
        else:
            c.rect(px - 3, top - 10, px + 3, top + 2, LIGHT)
    vehicles = [(CAR, 22, 12), (TRUCK, 34, 18), (BUS, 48, 22), (TRAIN, 70, 20)]
    for _ in range(rng.integers(1, 4)):
        label, w, h = vehicles[rng.choice(4, p=[0.55, 0.2, 0.15, 0.1])]
        scale = r(0.8, 1.4)
        vx, vy = r(0, WIDTH - w * scale), horizon + r(5, HEIGHT - horizon - 20)
        c.rect(vx, vy - h * scale, vx + w * scale, vy, label)
    for _ in range(rng.integers(0, 4)):  # pedestrians, riders on two-wheelers
        px, py = r(10, WIDTH - 10), horizon + r(5, HEIGHT - horizon - 15)
        if rng.random() < 0.6:
            c.ellipse(px, py - 9, 3.5, 9, PERSON)
        else:
            c.ellipse(px, py - 2, 8, 4, rng.choice([MOTORCYCLE, BICYCLE]))
            c.ellipse(px, py - 11, 3, 7, RIDER)
    c.ellipse(WIDTH / 2, HEIGHT + 6, WIDTH * 0.45, 14, EGO_VEHICLE)
    if rng.random() < 0.5:
        c.rect(r(0, WIDTH - 20), r(0, HEIGHT - 10), r(0, WIDTH), r(0, HEIGHT), UNLABELED)
    return c.ids


def texture_of(label_id):
    """Train classes get their palette colour and own stripes; ignored ids are dark."""
    train_id = LABEL_ID_TO_TRAIN_ID.get(label_id)
    if train_id is None:
        return np.array([20.0, 20.0, 20.0]), (0.0, 0.0), 0.0
    return class_texture(train_id, PALETTE[train_id])


def generate(root):
    """Write the dataset into ``root`` (which must not exist yet)."""
    for split, cities in SPLITS.items():
        rng = np.random.default_rng(SEEDS[split])
        for city, count in cities.items():
            img_dir = os.path.join(root, "leftImg8bit", split, city)
            gt_dir = os.path.join(root, "gtFine", split, city)
            os.makedirs(img_dir)
            os.makedirs(gt_dir)
            for i in range(count):
                stem = f"{city}_{i:06d}_{19 + i:06d}"
                ids = draw_scene(rng)
                Image.fromarray(render(ids, texture_of, rng)).save(
                    os.path.join(img_dir, f"{stem}_leftImg8bit.png"))
                if split in UNLABELED_SPLITS:
                    ids = np.full_like(ids, UNLABELED)
                Image.fromarray(ids).save(os.path.join(gt_dir, f"{stem}_gtFine_labelIds.png"))


def ensure_synthetic_cityscapes(root=None):
    """Generate (once) and convert the synthetic set; return its root."""
    return ensure_generated(root or default_root(), generate, convert_cityscapes)


def main(argv=None):
    generator_cli(argv, "Generate the synthetic Cityscapes set.", ensure_synthetic_cityscapes, default_root())


if __name__ == "__main__":
    with user_errors():
        main()
