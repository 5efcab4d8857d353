"""The shared ``demo.py``: image(s) -> colourised prediction, overlay, source and (when the
image sits in a dataset tree with its annotation) colourised label, one PNG each per image.

    python demo.py path/to/image_or_folder --checkpoint work_dirs/x/iter_160000.pth --out-dir demo_out

``--checkpoint`` may come from the config's ``paths.ckpt_path`` (ICNet's ``icnet_eval.yaml``,
its default demo config); ``--summary`` prints a layer-by-layer model summary first with
torchinfo, the maintained successor of torchsummary (torchsummary itself fails on modules that
take a tuple of feature maps, as every decode head here does).
"""
import os

import numpy as np
import torch
from PIL import Image

from common.config import config_path_value, load_config
from common.data import dataset_module
from common.datasets import read_image, read_label
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


def resolve_checkpoint(args, spec):
    """(checkpoint, config path): flags first, then the demo config's paths.ckpt_path."""
    config = args.config
    if config is None and spec.demo_config:
        config = os.path.join(spec.model_dir, "configs", spec.demo_config)
    checkpoint = args.checkpoint
    if checkpoint is None and config:
        checkpoint = config_path_value(load_config(config, model_builder=spec.build_model),
                                       "ckpt_path", spec.model_dir)
    if checkpoint is None:
        raise UserError("no checkpoint: pass --checkpoint" + (
            f" or set paths.ckpt_path in {config}" if config else ""))
    return checkpoint, config


def print_summary(model, image_shape, device):
    try:
        from torchinfo import summary
    except ImportError:
        raise UserError("--summary needs torchinfo: pip install torchinfo") from None
    print(summary(model, input_size=(1, 3, *image_shape), device=device, depth=3, verbose=0))


def main(argv, spec):
    p = ArgParser(description=f"{spec.name} demo: colourised prediction, overlay, source, label.")
    p.add_argument("input", help="an image or a folder of images")
    p.add_argument("--checkpoint", default=None,
                   help="model weights (default: the config's paths.ckpt_path)")
    p.add_argument("--config", default=None,
                   help="config (default: the checkpoint's own" + (
                       f", or configs/{spec.demo_config}" if spec.demo_config else "") + ")")
    p.add_argument("--out-dir", dest="out_dir", default="demo_out")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--opacity", type=float, default=0.5)
    p.add_argument("--summary", action="store_true",
                   help="print a model summary (torchinfo, torchsummary's successor)")
    args = p.parse_args(argv)
    if not 0 <= args.opacity <= 1:
        raise UserError(f"--opacity must be within [0, 1], got {args.opacity}")
    images = list_images(args.input)
    checkpoint, config = resolve_checkpoint(args, spec)
    device = select_device(args.device)
    model, cfg = load_for_inference(spec, checkpoint, config, device)
    resize = EvalResize(cfg["data"]["test_scale"])
    dataset = dataset_module(cfg)
    os.makedirs(args.out_dir, exist_ok=True)
    written = []
    for index, path in enumerate(images):
        original = read_image(path)
        image, _ = resize(original, None)
        if args.summary and index == 0:
            print_summary(model, image.shape[:2], device)
        tensor, _ = to_tensors(image, None)
        logits = predict_logits(model, tensor.to(device), original.shape[:2])
        pred = logits.argmax(1)[0].to(torch.uint8).cpu().numpy()
        stem = os.path.splitext(os.path.basename(path))[0]
        colour = colourise(pred, dataset.PALETTE)
        outputs = {"pred": colour, "overlay": overlay(original, colour, args.opacity),
                   "source": original}
        label_path = dataset.label_path_for(path)
        if os.path.isfile(label_path):
            outputs["label"] = colourise(read_label(label_path), dataset.PALETTE)
        for suffix, array in outputs.items():
            out = os.path.join(args.out_dir, f"{stem}_{suffix}.png")
            Image.fromarray(np.ascontiguousarray(array)).save(out)
            written.append(out)
        print(f"{path} -> {args.out_dir}/{stem}_{{{','.join(outputs)}}}.png")
    return written
