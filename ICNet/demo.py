"""ICNet demo: any image or folder -> colourised prediction, overlay and source (and the
colourised label when the image sits in a Cityscapes tree with its annotation).

    python3 demo.py                            # the seed's way: see below
    python3 demo.py path/to/image_or_folder [--checkpoint ckpt/iter_80000.pth] [--out-dir demo_out]

Without --checkpoint the seed's configs/icnet_eval.yaml names it (paths.ckpt_path, else the
newest checkpoint in its paths.ckpt_dir); without an input, the first val frame under its
paths.cityscapes_root (the synthetic Cityscapes when that is null) is used, as the seed does.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ICNet.icnet import ICNet  # noqa: E402
from common import cityscapes  # noqa: E402
from common.demo import check_demo_args, demo_parser, list_images, run_demo  # noqa: E402
from common.config import config_path_value, load_config  # noqa: E402
from common.device import select_device  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.inference import checkpoint_named_by, load_for_inference  # noqa: E402

NAME = "ICNet"
MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
EVAL_CONFIG = os.path.join(MODEL_DIR, "configs", "icnet_eval.yaml")


def main(argv=None):
    args = demo_parser(NAME, checkpoint_help=(
        "checkpoint (default: paths.ckpt_path of --config or configs/icnet_eval.yaml, else "
        "the newest checkpoint in its paths.ckpt_dir)"), input_help=(
        "an image or a folder of images (default: the first val frame under the config's "
        "paths.cityscapes_root)")).parse_args(argv)
    check_demo_args(args)
    images = list_images(args.input or first_val_frame(args.config or EVAL_CONFIG))
    checkpoint = checkpoint_named_by(args.checkpoint, args.config or EVAL_CONFIG, ICNet,
                                     MODEL_DIR)
    device = select_device(args.device)
    model, cfg = load_for_inference(ICNet, NAME, checkpoint, args.config, device)
    labels = [cityscapes.label_path_for(path) for path in images]
    return run_demo(model, cfg, images, labels, cityscapes.PALETTE, args, device)


def first_val_frame(config_path):
    """The seed's default input: the first val frame of the config's dataset."""
    cfg = load_config(config_path, model=ICNet)
    root = config_path_value(cfg, "cityscapes_root", MODEL_DIR)
    if root is None:
        from common.tools.synthetic_cityscapes import ensure_synthetic_cityscapes
        root = ensure_synthetic_cityscapes()
        print(f"No input and no paths.cityscapes_root: using the synthetic Cityscapes at {root}")
    split = cfg["data"]["val_split"]
    return sorted(cityscapes.find_pairs(root, split))[0][0]


if __name__ == "__main__":
    with user_errors():
        main()
