"""Convert Cityscapes ``*_gtFine_labelIds.png`` into ``*_gtFine_labelTrainIds.png``.

    python -m common.tools.convert_cityscapes /data/cityscapes --nproc 8

Uses the official mapping (19 train classes, everything else 255). Idempotent: files whose
trainIds output already exists (one channel, the source's size) are skipped; each output is written atomically, so an
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
from common.errors import ArgParser, UserError, first_line, user_errors  # noqa: E402
from common.stop_signals import ignore_stop_signals  # noqa: E402

SOURCE_SUFFIX = "_gtFine_labelIds.png"
TARGET_SUFFIX = "_gtFine_labelTrainIds.png"
_LUT = train_id_lut()


def read_label_ids(src):
    """A ``*_labelIds.png`` as a uint8 array; a file that is damaged or not 8-bit single
    channel (an RGB ``*_color.png`` renamed, a 16-bit export) is a one-line error."""
    try:
        with Image.open(src) as im:
            mode = im.mode
            label_ids = np.array(im)
    except (OSError, SyntaxError, ValueError) as exc:  # what Pillow raises for damaged files
        raise UserError(f"cannot decode labelIds file {src} ({first_line(exc)}); re-extract "
                        "gtFine from the Cityscapes archive") from None
    if mode != "L":
        raise UserError(f"labelIds file {src} has image mode {mode}, not L (8-bit, one "
                        "channel): it is not an official *_gtFine_labelIds.png; re-extract "
                        "gtFine from the Cityscapes archive")
    return label_ids


def up_to_date(dst, src):
    """An existing output that fits its source (one channel, same size); one left by an
    earlier run on a bad source is written again."""
    try:
        with Image.open(dst) as out, Image.open(src) as inp:
            return out.mode == "L" and out.size == inp.size
    except (OSError, SyntaxError, ValueError):
        return False


def convert_file(src):
    """Write the trainIds PNG next to ``src``; return True when a file was written."""
    dst = src[:-len(SOURCE_SUFFIX)] + TARGET_SUFFIX
    if os.path.exists(dst) and up_to_date(dst, src):
        return False
    train_ids = Image.fromarray(_LUT[read_label_ids(src)])
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
        with Pool(nproc, ignore_stop_signals) as pool:
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
