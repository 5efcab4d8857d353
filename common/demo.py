"""What a model's ``demo.py`` calls: image(s) -> colourised prediction, overlay, source and
(when the image sits in a dataset tree with its annotation) colourised label, one PNG each.

    python3 demo.py path/to/image_or_folder --checkpoint work_dirs/x/iter_160000.pth --out-dir demo_out

``--summary`` prints a layer-by-layer model summary first with
torchinfo, the maintained successor of torchsummary (torchsummary itself fails on modules that
take a tuple of feature maps, as every decode head here does).
"""
import io
import os

import numpy as np
import torch
from PIL import Image

from common.checkpoint import atomic_write_bytes
from common.datasets import read_image, read_label
from common.device import DEVICE_CHOICES
from common.errors import ArgParser, UserError
from common.inference import predict_logits
from common.transforms import EvalResize, to_tensors
from common.visualize import colourise, overlay

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")


def list_images(path):
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise UserError(f"folder {path} holds no {'/'.join(IMAGE_EXTS)} images")
        return files
    if not os.path.isfile(path):
        raise UserError(f"input {path} does not exist; pass an image or a folder of images")
    return [path]


def output_stems(images):
    """Each input's output name: its file name without extension, or with the extension
    folded in (``cam_jpg``) where two inputs share a stem (``cam.jpg``, ``cam.png``)."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    return [stem if stems.count(stem) == 1 else
            f"{stem}_{os.path.splitext(path)[1].lstrip('.').lower()}"
            for stem, path in zip(stems, images)]


def print_summary(model, image_shape, device):
    try:
        from torchinfo import summary
    except ImportError:
        raise UserError("--summary needs torchinfo: pip install torchinfo") from None
    print(summary(model, input_size=(1, 3, *image_shape), device=device, depth=3, verbose=0))


def demo_parser(name, checkpoint_help=None, input_help=None):
    """demo.py's flags; ``--checkpoint`` (``input``) is required unless ``checkpoint_help``
    (``input_help``) says where the model's demo.py finds one without it."""
    p = ArgParser(description=f"{name} demo: colourised prediction, overlay, source, label.")
    p.add_argument("input", nargs="?" if input_help else None, default=None,
                   help=input_help or "an image or a folder of images")
    p.add_argument("--checkpoint", required=checkpoint_help is None, default=None,
                   help=checkpoint_help or "model weights")
    p.add_argument("--config", default=None,
                   help="config (default: the one the checkpoint records)")
    p.add_argument("--out-dir", dest="out_dir", default="demo_out")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--opacity", type=float, default=0.5)
    p.add_argument("--summary", action="store_true",
                   help="print a model summary (torchinfo, torchsummary's successor)")
    return p


def check_demo_args(args):
    if not 0 <= args.opacity <= 1:
        raise UserError(f"--opacity must be within [0, 1], got {args.opacity}")
    if os.path.exists(args.out_dir) and not os.path.isdir(args.out_dir):
        raise UserError(f"--out-dir {args.out_dir} is a file; pass a folder (made if missing)")


def run_demo(model, cfg, images, label_paths, palette, args, device):
    """Predict each of ``images`` and write ``<stem>_{pred,overlay,source[,label]}.png`` to
    ``args.out_dir`` (the label where ``label_paths`` names an existing file). Returns the
    written paths."""
    resize = EvalResize(cfg["data"]["test_scale"])
    os.makedirs(args.out_dir, exist_ok=True)
    stems = output_stems(images)
    written = []
    for index, (path, label_path) in enumerate(zip(images, label_paths)):
        original = read_image(path)
        image, _ = resize(original, None)
        if args.summary and index == 0:
            print_summary(model, image.shape[:2], device)
        tensor, _ = to_tensors(image, None)
        logits = predict_logits(model, tensor.to(device), original.shape[:2])
        pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        stem = stems[index]
        colour = colourise(pred, palette)
        outputs = {"pred": colour, "overlay": overlay(original, colour, args.opacity),
                   "source": original}
        if label_path and os.path.isfile(label_path):
            outputs["label"] = colourise(read_label(label_path), palette)
        for suffix, array in outputs.items():
            out = os.path.join(args.out_dir, f"{stem}_{suffix}.png")
            buffer = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
            atomic_write_bytes(out, lambda f, data=buffer.getvalue(): f.write(data))
            written.append(out)
        print(f"{path} -> {args.out_dir}/{stem}_{{{','.join(outputs)}}}.png")
    return written
