"""Convert the SBD augmented annotations for PASCAL VOC 2012 training (mmseg's voc_aug.py).

    python PSPNet/tools/voc_aug.py VOCdevkit VOCdevkit/VOCaug --nproc 8

Reads ``VOCaug/dataset/cls/*.mat`` (``GTcls.Segmentation``, via scipy.io.loadmat) and writes
``VOCdevkit/VOC2012/SegmentationClassAug/<id>.png`` (palette PNGs of class indices), then
``ImageSets/Segmentation/aug.txt`` = (SBD train + SBD val) - (VOC train + VOC val) and
``trainaug.txt`` = (SBD train + SBD val + VOC train) - VOC val. Idempotent.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from common.errors import ArgParser, UserError, run_main  # noqa: E402
from common.voc import convert_sbd  # noqa: E402


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
    run_main(main)
