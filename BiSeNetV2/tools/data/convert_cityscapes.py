"""The seed's (PaddleSeg's) Cityscapes converter, as its README types it in BiSeNetV2/:

    python tools/data/convert_cityscapes.py --cityscapes_path data/cityscapes --num_workers 8

Writes ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_labelIds.png`` (the official
mapping): the same code as ``python3 -m common.tools.convert_cityscapes`` from the repository
root, with PaddleSeg's flag names.
"""
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))))

from common.errors import ArgParser, user_errors  # noqa: E402
from common.tools.convert_cityscapes import main as convert  # noqa: E402


def main(argv=None):
    p = ArgParser(description="PaddleSeg's convert_cityscapes.py: labelIds -> labelTrainIds.")
    p.add_argument("--cityscapes_path", required=True, help="Cityscapes root (gtFine/ inside)")
    p.add_argument("--num_workers", type=int, default=1, help="worker processes")
    args = p.parse_args(argv)
    convert([args.cityscapes_path, "--nproc", str(args.num_workers)])


if __name__ == "__main__":
    with user_errors():
        main()
