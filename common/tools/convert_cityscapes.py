"""Convert Cityscapes ``*_gtFine_labelIds.png`` into ``*_gtFine_labelTrainIds.png``.

    python -m common.tools.convert_cityscapes /data/cityscapes --nproc 8

Uses the official mapping (19 train classes, everything else 255). Idempotent: files whose
trainIds output already exists are skipped; each output is written atomically, so an
interrupted run leaves no half file and can simply be run again.
"""
import glob
import os
import sys
from multiprocessing import Pool

import numpy as np
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.checkpoint import atomic_write_bytes  # noqa: E402
from common.cityscapes import train_id_lut  # noqa: E402
from common.errors import ArgParser, UserError, user_errors  # noqa: E402

SOURCE_SUFFIX = "_gtFine_labelIds.png"
TARGET_SUFFIX = "_gtFine_labelTrainIds.png"
_LUT = train_id_lut()


def convert_file(src):
    """Write the trainIds PNG next to ``src``; return True when a file was written."""
    dst = src[:-len(SOURCE_SUFFIX)] + TARGET_SUFFIX
    if os.path.exists(dst):
        return False
    with Image.open(src) as im:
        label_ids = np.array(im)
    train_ids = Image.fromarray(_LUT[label_ids])
    atomic_write_bytes(dst, lambda f: train_ids.save(f, format="PNG"))
    return True


def convert_cityscapes(root, nproc=1):
    """Convert every labelIds file under ``root/gtFine``; return (written, skipped)."""
    gt = os.path.join(root, "gtFine")
    if not os.path.isdir(gt):
        raise UserError(f"{gt} does not exist; pass the Cityscapes root (holding gtFine/)")
    sources = sorted(glob.glob(os.path.join(gt, "*", "*", "*" + SOURCE_SUFFIX)))
    if not sources:
        raise UserError(f"no *{SOURCE_SUFFIX} files under {gt}; is this Cityscapes gtFine?")
    if nproc > 1:
        with Pool(nproc) as pool:
            written = sum(pool.map(convert_file, sources, chunksize=16))
    else:
        written = sum(convert_file(s) for s in sources)
    return written, len(sources) - written


def main(argv=None):
    parser = ArgParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="Cityscapes root holding gtFine/ and leftImg8bit/")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    if args.nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {args.nproc}")
    written, skipped = convert_cityscapes(args.root, args.nproc)
    print(f"labelTrainIds: {written} written, {skipped} already present")


if __name__ == "__main__":
    with user_errors():
        main()
