"""The shared ``pth2onnx.py``: checkpoint -> ONNX, then onnxruntime parity.

    python pth2onnx.py --checkpoint work_dirs/x/iter_160000.pth [--output BiSeNetV1.onnx]
        [--opset 11] [--input-shape 1024 2048] [--batch 1] [--dynamic] [--input-name input]

Exports the eval-mode network (main logits at input resolution, 1x3x1024x2048 by default,
opset 11 for Ascend ATC; BatchNorm folded into the convolutions unless ``--no-fold-bn``), runs onnxruntime on the same seeded input and fails when the max
absolute difference against PyTorch exceeds ``--tolerance`` (1e-3); the difference is printed
either way. ``--dynamic`` makes batch, height and width dynamic axes.
"""
import copy
import os
import warnings

import numpy as np
import torch

from common.errors import ArgParser, UserError
from common.fuse import fold_batchnorm
from common.inference import load_for_inference


def export_onnx(model, path, input_shape, opset=11, dynamic=False, input_name="input",
                output_name="output"):
    """Trace ``model`` (eval mode) into ``path`` with the TorchScript exporter, which still
    targets opset 11 (the torch.export-based one starts at opset 18)."""
    dummy = torch.randn(input_shape)
    axes = None
    if dynamic:
        axes = {input_name: {0: "batch", 2: "height", 3: "width"},
                output_name: {0: "batch", 2: "height", 3: "width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), path, opset_version=opset, dynamo=False,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes=axes, do_constant_folding=True)


def onnx_parity(model, path, input_shape, seed=0):
    """(max |onnxruntime - PyTorch|, max |PyTorch|) on a seeded input of ``input_shape``."""
    import onnxruntime as ort
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        raise UserError(f"onnxruntime output shape {got.shape} != PyTorch {expected.shape}")
    return float(np.abs(got - expected).max()), float(np.abs(expected).max())


def main(argv, spec):
    p = ArgParser(description=f"Export {spec.name} to ONNX and check it.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", default=None, help="needed for checkpoints without a config")
    p.add_argument("--output", default=f"{spec.name}.onnx")
    p.add_argument("--opset", type=int, default=11)
    p.add_argument("--input-shape", dest="input_shape", type=int, nargs=2, default=[1024, 2048],
                   metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--input-name", dest="input_name", default=spec.onnx_input_name)
    p.add_argument("--tolerance", type=float, default=1e-3)
    p.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                   help="keep BatchNorm layers (default: folded into the convolutions)")
    args = p.parse_args(argv)
    if args.opset < 11:
        raise UserError(f"--opset {args.opset} is too old; use 11 or newer")
    if args.batch < 1 or min(args.input_shape) < 32:
        raise UserError("--batch must be >= 1 and --input-shape at least 32x32")
    model, _ = load_for_inference(spec, args.checkpoint, args.config)
    shape = (args.batch, 3, *args.input_shape)
    exported = model
    if args.fold_bn:
        exported = copy.deepcopy(model)
        fold_batchnorm(exported)
    export_onnx(exported, args.output, shape, args.opset, args.dynamic, args.input_name)
    diff, scale = onnx_parity(model, args.output, shape)  # against the checkpoint as trained
    print(f"exported {args.output} (opset {args.opset}, input {args.input_name} "
          f"{'x'.join(map(str, shape))}{', dynamic' if args.dynamic else ''}"
          f"{', BN folded' if args.fold_bn else ''}); "
          f"onnxruntime max abs diff vs PyTorch: {diff:.3e} (max |logit| {scale:.3g})")
    if not diff <= args.tolerance:
        raise UserError(f"onnxruntime differs from PyTorch by {diff:.3e} > {args.tolerance} "
                        f"(max |logit| {scale:.3g}); {os.path.basename(args.output)} is not "
                        "faithful")
    return diff
