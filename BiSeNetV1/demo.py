"""BiSeNetV1 demo: any image or folder -> colourised prediction, overlay and source (and the
colourised label when the image sits in a dataset tree with its annotation).

    python3 demo.py path/to/image_or_folder --checkpoint work_dirs/<run>/iter_N.pth [--out-dir demo_out]
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from BiSeNetV1.bisenetv1 import BiSeNetV1  # noqa: E402
from common import cityscapes  # noqa: E402
from common.demo import check_demo_args, demo_parser, list_images, run_demo  # noqa: E402
from common.device import select_device  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.inference import load_for_inference  # noqa: E402

NAME = "BiSeNetV1"


def main(argv=None):
    args = demo_parser(NAME).parse_args(argv)
    check_demo_args(args)
    images = list_images(args.input)
    device = select_device(args.device)
    model, cfg = load_for_inference(BiSeNetV1, NAME, args.checkpoint, args.config, device)
    labels = [cityscapes.label_path_for(path) for path in images]
    return run_demo(model, cfg, images, labels, cityscapes.PALETTE, args, device)


if __name__ == "__main__":
    with user_errors():
        main()
