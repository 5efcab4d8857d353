"""ICNet demo: any image or folder -> colourised prediction, overlay and source (and the
colourised label when the image sits in a Cityscapes tree with its annotation).

    python3 demo.py path/to/image_or_folder [--checkpoint ckpt/iter_80000.pth] [--out-dir demo_out]

Without --checkpoint the seed's configs/icnet_eval.yaml names it (paths.ckpt_path, else the
newest checkpoint in its paths.ckpt_dir).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ICNet.icnet import ICNet  # noqa: E402
from common import cityscapes  # noqa: E402
from common.demo import check_demo_args, demo_parser, list_images, run_demo  # noqa: E402
from common.device import select_device  # noqa: E402
from common.errors import UserError, user_errors  # noqa: E402
from common.inference import checkpoint_named_by, load_for_inference  # noqa: E402

NAME = "ICNet"
MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
EVAL_CONFIG = os.path.join(MODEL_DIR, "configs", "icnet_eval.yaml")


def main(argv=None):
    args = demo_parser(NAME, checkpoint_help=(
        "checkpoint (default: paths.ckpt_path of --config or configs/icnet_eval.yaml, else "
        "the newest checkpoint in its paths.ckpt_dir)")).parse_args(argv)
    check_demo_args(args)
    images = list_images(args.input)
    checkpoint = args.checkpoint or checkpoint_named_by(args.config or EVAL_CONFIG, ICNet,
                                                         MODEL_DIR)
    if checkpoint is None:
        raise UserError(f"no checkpoint: pass --checkpoint or set paths.ckpt_path in "
                        f"{args.config or EVAL_CONFIG}")
    device = select_device(args.device)
    model, cfg = load_for_inference(ICNet, NAME, checkpoint, args.config, device)
    labels = [cityscapes.label_path_for(path) for path in images]
    return run_demo(model, cfg, images, labels, cityscapes.PALETTE, args, device)


if __name__ == "__main__":
    with user_errors():
        main()
