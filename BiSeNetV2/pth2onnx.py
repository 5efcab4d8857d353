"""Export a BiSeNetV2 checkpoint to ONNX and check it with onnxruntime.

    python3 pth2onnx.py --checkpoint work_dirs/<run>/iter_N.pth [--output BiSeNetV2.onnx]
        [--opset 11] [--input-shape H W] [--dynamic] [--no-fold-bn]

The eval-mode network (main logits at input resolution; BatchNorm folded into the convolutions
unless --no-fold-bn), opset 11 for Ascend ATC by default. mmseg checkpoints need --config.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from BiSeNetV2.bisenetv2 import BiSeNetV2  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.export import check_export_args, export_checked, export_parser  # noqa: E402
from common.inference import load_for_inference  # noqa: E402

NAME = "BiSeNetV2"


def main(argv=None):
    args = export_parser(NAME).parse_args(argv)
    check_export_args(args)
    model, _ = load_for_inference(BiSeNetV2, NAME, args.checkpoint, args.config)
    return export_checked(model, args)


if __name__ == "__main__":
    with user_errors():
        main()
