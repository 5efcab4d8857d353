"""Cityscapes test-server submission: ``--format-only``.

Predicts every frame of a split (labels not needed: the test split has none) in the config's
inference mode and writes, per frame, a labelIds PNG (trainIds mapped back to the official
Cityscapes ids) named after the input frame: ``<dir>/<city>/<city>_<seq>_<frame>_leftImg8bit.png``,
as mmseg's ``CityscapesMetric(format_only=True)`` names them. Zip the folder and upload it; the
official evaluator (``cityscapesscripts``' ``evalPixelLevelSemanticLabeling``) finds the files by
their ``<city>_<seq>_<frame>`` prefix. With several processes rank r writes frames r, r+N, ...
"""
import glob
import io
import os

import numpy as np
import torch
from PIL import Image

from common import distributed
from common.checkpoint import atomic_write_bytes, load_model_weights
from common.cityscapes import IMG_SUFFIX, LABEL_ID_TO_TRAIN_ID
from common.datasets import read_image
from common.errors import UserError
from common.evaluation import checkpoint_to_evaluate
from common.device_caps import caps
from common.fuse import fast_inference_model
from common.inference import InferenceMode, predict_logits
from common.transforms import EvalResize, TTAResize, to_tensors


def add_submission_flags(parser):
    parser.add_argument("--format-only", "--format_only", dest="format_only",
                        action="store_true",
                        help="write a Cityscapes submission (labelIds PNGs) of --split instead "
                             "of computing metrics")
    parser.add_argument("--split", default=None,
                        help="split for --format-only (default: the config's val split; "
                             "'test' for the benchmark server)")
    parser.add_argument("--format-dir", "--format_dir", dest="format_dir", default=None,
                        help="where --format-only writes (default <work dir>/format_<split>)")


def label_id_lut():
    """256-entry uint8 lookup table trainId -> labelId (255 -> 0, unlabeled)."""
    lut = np.zeros(256, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[train_id] = label_id
    return lut


def split_frames(root, split):
    frames = sorted(glob.glob(os.path.join(root, "leftImg8bit", split, "*", "*" + IMG_SUFFIX)))
    if not frames:
        raise UserError(f"no *{IMG_SUFFIX} frames under {os.path.join(root, 'leftImg8bit', split)}"
                        "; check --data_path and --split")
    return frames


@torch.no_grad()
def write_submission(model, args, cfg, rt, root, model_dir):
    """Load the checkpoint to evaluate into ``model`` and write the split's labelIds PNGs;
    returns the folder."""
    split = args.split or cfg["data"]["val_split"]
    frames = split_frames(root, split)
    out_dir = os.path.abspath(args.format_dir or os.path.join(rt.work_dir, f"format_{split}"))
    path = checkpoint_to_evaluate(args.checkpoint, cfg, rt, model_dir)
    load_model_weights(model, path, rt.name)
    model.to(rt.device).eval()
    net = (fast_inference_model(model, caps(rt.device.type).channels_last)
           if cfg["eval"]["fast"] else model)
    mode = InferenceMode.from_config(cfg)
    resize = TTAResize(cfg["eval"]["tta_ratios"]) if mode.tta else EvalResize(
        cfg["data"]["test_scale"])
    lut = label_id_lut()
    rt.log(f"--format-only: {len(frames)} frames of {split} with {path} ({mode.name} "
           f"inference) -> {out_dir}")
    for index in range(rt.dist.rank, len(frames), rt.dist.world_size):
        frame = frames[index]
        image = read_image(frame)
        resized, _ = resize(image, None)
        if isinstance(resized, list):
            inputs = [to_tensors(i, None)[0].to(rt.device) for i in resized]
        else:
            inputs = to_tensors(resized, None)[0].to(rt.device)
        pred = predict_logits(net, inputs, image.shape[:2], None, mode).argmax(1)[0]
        label_ids = lut[pred.to(torch.uint8).cpu().numpy()]
        city = os.path.basename(os.path.dirname(frame))
        dest = os.path.join(out_dir, city, os.path.basename(frame))
        buffer = io.BytesIO()
        Image.fromarray(label_ids).save(buffer, format="PNG")
        atomic_write_bytes(dest, lambda f, data=buffer.getvalue(): f.write(data))
    distributed.barrier()
    rt.log(f"Wrote {len(frames)} labelIds PNGs to {out_dir}: zip that folder for the Cityscapes "
           "benchmark server")
    return out_dir
