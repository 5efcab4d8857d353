"""Export an ICNet checkpoint to ONNX and check it with onnxruntime.

    python3 pth2onnx.py                       # the seed's way: the checkpoint configs/icnet_eval.yaml
                                              # names (paths.ckpt_path, else newest in ckpt_dir)
    python3 pth2onnx.py --checkpoint ckpt/iter_80000.pth [--output ICNet.onnx] [--dynamic]

The eval-mode network (main logits at input resolution; BatchNorm folded into the convolutions
unless --no-fold-bn), input named ``actual_input_1`` as the seed's export, opset 11 for Ascend
ATC by default. mmseg checkpoints need --config.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ICNet.icnet import ICNet  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.export import check_export_args, export_checked, export_parser  # noqa: E402
from common.inference import checkpoint_named_by, load_for_inference  # noqa: E402

NAME = "ICNet"
MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
EVAL_CONFIG = os.path.join(MODEL_DIR, "configs", "icnet_eval.yaml")


def main(argv=None):
    args = export_parser(NAME, input_name="actual_input_1", checkpoint_help=(
        "checkpoint (default: paths.ckpt_path of --config or configs/icnet_eval.yaml, else "
        "the newest checkpoint in its paths.ckpt_dir)")).parse_args(argv)
    check_export_args(args)
    checkpoint = checkpoint_named_by(args.checkpoint, args.config or EVAL_CONFIG, ICNet,
                                     MODEL_DIR)
    model, _ = load_for_inference(ICNet, NAME, checkpoint, args.config)
    return export_checked(model, args)


if __name__ == "__main__":
    with user_errors():
        main()
