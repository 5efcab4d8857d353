"""Checkpoint -> ONNX with onnxruntime parity: the flags and the export a model's
``pth2onnx.py`` calls.

    python3 pth2onnx.py --checkpoint work_dirs/x/iter_160000.pth [--output BiSeNetV1.onnx]
        [--opset 11] [--input-shape 1024 2048] [--batch 1] [--dynamic] [--input-name input]

Exports the eval-mode network (main logits at input resolution, 1x3x1024x2048 by default,
opset 11 for Ascend ATC; BatchNorm folded into the convolutions unless ``--no-fold-bn``), runs
onnxruntime on the same seeded input and fails when the max absolute difference against
PyTorch exceeds ``--tolerance`` (1e-4) times the logits' scale (max |logit|, at least 1) or
when the two disagree on the argmax of more than 0.1% of the pixels; both are printed either
way. The file is written next to ``--output`` under a temporary name and moved into place only
after it passed, so a rejected export never replaces an earlier good one. ``--dynamic`` makes batch, height and width dynamic axes.
"""
import copy
import os
import tempfile
import warnings

import numpy as np
import torch

from common.errors import ArgParser, UserError, check_output_path
from common.fuse import fold_batchnorm


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
    """(max |onnxruntime - PyTorch|, max |PyTorch|, share of pixels whose argmax agrees) on a
    seeded input of ``input_shape``."""
    import onnxruntime as ort
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        raise UserError(f"onnxruntime output shape {got.shape} != PyTorch {expected.shape}")
    agree = float((got.argmax(1) == expected.argmax(1)).mean())
    return float(np.abs(got - expected).max()), float(np.abs(expected).max()), agree


def export_parser(name, input_name="input", checkpoint_help=None):
    """pth2onnx.py's flags; ``--checkpoint`` is required unless ``checkpoint_help`` says
    where the model's pth2onnx.py finds one without it."""
    p = ArgParser(description=f"Export {name} to ONNX and check it with onnxruntime.")
    p.add_argument("--checkpoint", required=checkpoint_help is None, default=None,
                   help=checkpoint_help)
    p.add_argument("--config", default=None, help="needed for checkpoints without a config")
    p.add_argument("--output", default=f"{name}.onnx")
    p.add_argument("--opset", type=int, default=11)
    p.add_argument("--input-shape", dest="input_shape", type=int, nargs=2, default=[1024, 2048],
                   metavar=("H", "W"))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    p.add_argument("--input-name", dest="input_name", default=input_name)
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="largest accepted max |difference| relative to max(1, max |logit|)")
    p.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                   help="keep BatchNorm layers (default: folded into the convolutions)")
    return p


def check_export_args(args):
    """The export flags' values, before the checkpoint is read."""
    newest = max_opset()
    if not 11 <= args.opset <= newest:
        raise UserError(f"--opset {args.opset} is not supported: this exporter writes opsets 11 "
                        f"to {newest} (11 for Ascend ATC)")
    if args.batch < 1 or min(args.input_shape) < 32:
        raise UserError("--batch must be >= 1 and --input-shape at least 32x32")
    if not args.tolerance >= 0:
        raise UserError(f"--tolerance must be >= 0, got {args.tolerance}")
    check_output_path(args.output, "--output")


def max_opset():
    """The newest opset torch's TorchScript exporter writes (20 in torch 2.5 to 2.13)."""
    from torch.onnx import _constants  # private; the fallback covers its absence
    return getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17)


def export_checked(model, args):
    """Export ``model`` (eval mode, BN folded unless ``--no-fold-bn``) as ``args`` say, then
    compare onnxruntime with the unfolded PyTorch model; print the comparison, fail above
    ``--tolerance`` (relative) or below 99.9% argmax agreement. Returns the max difference."""
    shape = (args.batch, 3, *args.input_shape)
    exported = model
    if args.fold_bn:
        exported = copy.deepcopy(model)
        fold_batchnorm(exported)
    # loaded before any work: a Ctrl-C inside this import surfaces as an ImportError
    import onnxruntime  # noqa: F401
    output = os.path.abspath(args.output)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=os.path.dirname(output))
    os.close(fd)
    try:
        print(f"exporting {args.output} ({'x'.join(map(str, shape))}, opset {args.opset}; "
              "a few seconds to a minute)...", flush=True)
        export_onnx(exported, tmp, shape, args.opset, args.dynamic, args.input_name)
        print("checking it with onnxruntime against PyTorch...", flush=True)
        diff, scale, agree = onnx_parity(model, tmp, shape)  # against the model as trained
        relative = diff / max(scale, 1.0)
        print(f"exported {args.output} (opset {args.opset}, input {args.input_name} "
              f"{'x'.join(map(str, shape))}{', dynamic' if args.dynamic else ''}"
              f"{', BN folded' if args.fold_bn else ''}); onnxruntime vs PyTorch: max abs "
              f"diff {diff:.3e} (max |logit| {scale:.3g}, relative {relative:.1e}), argmax "
              f"agreement {100 * agree:.3f}%")
        if not (relative <= args.tolerance and agree >= 0.999):
            raise UserError(f"onnxruntime differs from PyTorch (relative {relative:.1e} > "
                            f"{args.tolerance} or argmax agreement {100 * agree:.2f}% < 99.9%); "
                            f"{os.path.basename(args.output)} was not written")
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return diff
