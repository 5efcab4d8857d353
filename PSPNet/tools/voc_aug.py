"""Convert the SBD augmented annotations for PASCAL VOC 2012 training (mmseg's voc_aug.py).

    python PSPNet/tools/voc_aug.py VOCdevkit VOCdevkit/VOCaug --nproc 8

Reads ``VOCaug/dataset/cls/*.mat`` (``GTcls.Segmentation``, via scipy.io.loadmat) and writes
``VOCdevkit/VOC2012/SegmentationClassAug/<id>.png`` (palette PNGs of class indices), then
``ImageSets/Segmentation/aug.txt`` = (SBD train + SBD val) - (VOC train + VOC val) and
``trainaug.txt`` = (SBD train + SBD val + VOC train) - VOC val. Idempotent.
"""
import os
import sys
from multiprocessing import Pool

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.checkpoint import atomic_write_bytes  # noqa: E402
from common.errors import ArgParser, UserError, first_line, user_errors  # noqa: E402
from common.stop_signals import ignore_stop_signals  # noqa: E402
from PSPNet.voc import read_list, save_palette_png, voc2012_dir  # noqa: E402


def _convert_mat(job):
    import scipy.io
    mat_path, out_path = job
    if os.path.exists(out_path):
        return False
    try:
        mask = scipy.io.loadmat(mat_path)["GTcls"][0]["Segmentation"][0]
    except Exception as exc:
        raise UserError(f"cannot read SBD annotation {mat_path} ({first_line(exc)}); is it an SBD "
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
    with Pool(nproc, ignore_stop_signals) if nproc > 1 else _Serial() as pool:
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


def main(argv=None):
    parser = ArgParser(description="SBD .mat -> VOC2012/SegmentationClassAug + aug.txt")
    parser.add_argument("devkit", help="VOCdevkit folder (holding VOC2012/)")
    parser.add_argument("aug", help="SBD root (benchmark_RELEASE, holding dataset/cls/)")
    parser.add_argument("--nproc", type=int, default=1, help="worker processes")
    args = parser.parse_args(argv)
    if args.nproc < 1:
        raise UserError(f"--nproc must be at least 1, got {args.nproc}")
    counts = convert_sbd(args.devkit, args.aug, args.nproc)
    print(f"SegmentationClassAug: {counts['converted']} written, {counts['skipped']} already "
          f"present; aug.txt {counts['aug']} ids, trainaug.txt {counts['trainaug']} ids")


if __name__ == "__main__":
    with user_errors():
        main()
