"""What the synthetic datasets share: the cache folder, generate-once-atomically, and
rendering a label map into an image whose classes each have their own colour and texture."""
import os
import shutil
import sys
import tempfile

import numpy as np

from common.errors import ArgParser


def ensure_generated(root, generate, finish):
    """Run ``generate(folder)`` then ``finish(folder)`` in a temp folder and rename it to
    ``root`` unless ``root`` exists; then ``finish(root)`` again (idempotent steps only), so a
    half-written set is never visible and concurrent callers are safe."""
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        print(f"Generating the synthetic dataset into {root} (once; about 10 s)...",
              file=sys.stderr, flush=True)
        parent = os.path.dirname(root)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-synthetic-", dir=parent)
        try:
            data = os.path.join(tmp, "data")
            generate(data)
            finish(data)
            try:
                os.rename(data, root)
            except OSError:
                if not os.path.isdir(root):  # lost a race only if someone else finished
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finish(root)
    return root


def class_texture(class_index, colour):
    """(base RGB, stripe frequency (fx, fy), amplitude): fixed per class index."""
    g = np.random.default_rng(1000 + class_index)
    angle = g.uniform(0, np.pi)
    period = g.uniform(3, 12)
    freq = (np.cos(angle) / period, np.sin(angle) / period)
    return np.asarray(colour, dtype=np.float64), freq, g.uniform(15, 35)


def render(label_map, texture_of, rng):
    """Label map -> RGB uint8: per-class colour and stripes (``texture_of(label)``), plus
    pixel noise and a global brightness jitter."""
    height, width = label_map.shape
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), dtype=np.float64)
    for label in np.unique(label_map):
        mask = label_map == label
        base, (fx, fy), amp = texture_of(int(label))
        stripes = amp * np.sin(2 * np.pi * (fx * xx[mask] + fy * yy[mask]))
        img[mask] = base + stripes[:, None]
    img += rng.normal(0, 6, img.shape) + rng.uniform(-15, 15)
    return np.clip(img, 0, 255).astype(np.uint8)


def generator_cli(argv, description, ensure, default_root):
    """``python3 -m <package>.synthetic_<name> [--out DIR]``: generate once, print the root."""
    parser = ArgParser(description=description)
    parser.add_argument("--out", default=None, help=f"dataset root (default {default_root})")
    print(ensure(parser.parse_args(argv).out))
