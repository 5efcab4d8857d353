"""Inference shared by evaluation, the demo and export: building a model from a checkpoint
and whole-image prediction (normalise, forward, logits resized to the wanted size)."""
import os

import torch

from common.checkpoint import apply_weights, load_file
from common.config import load_config, validate
from common.errors import UserError
from common.layers import resize
from common.transforms import Normalize

_NORMALIZE = Normalize()


def config_for_checkpoint(spec, ckpt, checkpoint_path=None, config_path=None):
    """The resolved config stored in one of our checkpoints (``ckpt``, already loaded), or
    ``config_path`` (needed for mmseg checkpoints, which carry no config of ours)."""
    if config_path:
        return load_config(config_path, model_builder=spec.build_model)
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("config"), dict):
        return validate(meta["config"], spec.build_model)
    default = os.path.join(spec.model_dir, "configs", spec.default_config)
    raise UserError(f"checkpoint {checkpoint_path} records no config; pass --config "
                    f"(e.g. {default})")


def load_for_inference(spec, checkpoint, config_path=None, device="cpu"):
    """(model in eval mode on ``device``, resolved config), reading the checkpoint once."""
    ckpt = load_file(checkpoint)
    cfg = config_for_checkpoint(spec, ckpt, checkpoint, config_path)
    model = spec.build_model(**cfg["model"])
    apply_weights(model, ckpt, checkpoint, spec.name)
    return model.to(device).eval(), cfg


@torch.no_grad()
def predict_logits(model, image, out_size, amp=None):
    """``image``: uint8 CHW (or NCHW) RGB tensor on the model's device -> float logits
    N x C x out_size (whole-image mode)."""
    batch = image[None] if image.dim() == 3 else image
    batch = _NORMALIZE(batch)
    if amp is not None:
        with amp.autocast():
            logits = model(batch)
    else:
        logits = model(batch)
    return resize(logits.float(), out_size)
