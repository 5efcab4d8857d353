"""The shared ``demo.py``: image(s) -> colourised prediction and overlay PNG per image.

    python demo.py --checkpoint work_dirs/x/iter_160000.pth path/to/image_or_folder --out-dir demo_out
"""
import os

import torch
from PIL import Image

from common.data import palette
from common.datasets import read_image
from common.device import DEVICE_CHOICES, select_device
from common.errors import ArgParser, UserError
from common.inference import load_for_inference, predict_logits
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


def main(argv, spec):
    p = ArgParser(description=f"{spec.name} demo: colourised prediction + overlay.")
    p.add_argument("input", help="an image or a folder of images")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", default=None, help="needed for checkpoints without a config")
    p.add_argument("--out-dir", dest="out_dir", default="demo_out")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--opacity", type=float, default=0.5)
    args = p.parse_args(argv)
    if not 0 <= args.opacity <= 1:
        raise UserError(f"--opacity must be within [0, 1], got {args.opacity}")
    device = select_device(args.device)
    model, cfg = load_for_inference(spec, args.checkpoint, args.config, device)
    resize = EvalResize(cfg["data"]["test_scale"])
    colours = palette(cfg)
    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    for path in list_images(args.input):
        original = read_image(path)
        image, _ = resize(original, None)
        tensor, _ = to_tensors(image, None)
        logits = predict_logits(model, tensor.to(device), original.shape[:2])
        pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        stem = os.path.splitext(os.path.basename(path))[0]
        colour = colourise(pred, colours)
        for suffix, array in (("pred", colour), ("overlay", overlay(original, colour,
                                                                     args.opacity))):
            out = os.path.join(args.out_dir, f"{stem}_{suffix}.png")
            Image.fromarray(array).save(out)
            written.append(out)
        print(f"{path} -> {args.out_dir}/{stem}_{{pred,overlay}}.png")
    return written
