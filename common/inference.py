"""Inference shared by evaluation, the demo and export: building a model from a checkpoint
and prediction in mmseg's whole / slide modes, with optional multi-scale + flip TTA."""
import contextlib
from dataclasses import dataclass

import torch

from common.checkpoint import apply_weights, load_file, newest_checkpoint
from common.config import config_path_value, load_config, validate
from common.errors import UserError
from common.layers import resize
from common.transforms import TTA_RATIOS, Normalize

_NORMALIZE = Normalize()


def config_for_checkpoint(network, ckpt, checkpoint_path=None, config_path=None):
    """The resolved config stored in one of our checkpoints (``ckpt``, already loaded), or
    ``config_path`` (needed for mmseg checkpoints, which carry no config of ours); the
    ``model`` section is checked against the ``network`` class."""
    if config_path:
        return load_config(config_path, model=network)
    meta = ckpt.get("meta") if isinstance(ckpt, dict) else None
    if isinstance(meta, dict) and isinstance(meta.get("config"), dict):
        return validate(meta["config"], network)
    raise UserError(f"checkpoint {checkpoint_path} records no config; pass --config (one of "
                    "the model's configs/*.yaml)")


def load_for_inference(network, name, checkpoint, config_path=None, device="cpu"):
    """(``network`` built from the config and loaded with ``checkpoint``, in eval mode on
    ``device``; the resolved config), reading the checkpoint once. ``name`` is the model's
    name, checked against the one the checkpoint records."""
    ckpt = load_file(checkpoint)
    cfg = config_for_checkpoint(network, ckpt, checkpoint, config_path)
    model = network(**cfg["model"])
    apply_weights(model, ckpt, checkpoint, name)
    return model.to(device).eval(), cfg


def checkpoint_named_by(checkpoint, config_path, network, model_dir):
    """``checkpoint`` when given, else the one a seed-style config names: ``paths.ckpt_path``,
    else the newest in ``paths.ckpt_dir`` (relative to ``model_dir``); ICNet's
    ``python3 pth2onnx.py`` / ``demo.py`` without arguments. None of them: a one-line error."""
    if checkpoint:
        return checkpoint
    cfg = load_config(config_path, model=network)
    folder = config_path_value(cfg, "ckpt_dir", model_dir)
    named = config_path_value(cfg, "ckpt_path", model_dir) or (
        newest_checkpoint(folder) if folder else None)
    if named is None:
        raise UserError(f"no checkpoint: pass --checkpoint, set paths.ckpt_path in "
                        f"{config_path}, or train first so that its ckpt_dir holds one")
    return named


@dataclass(frozen=True)
class InferenceMode:
    """How one evaluation image becomes logits (config section ``eval``, flags ``--eval-mode``,
    ``--slide-crop``, ``--slide-stride``, ``--tta``).

    ``whole``: one forward pass over the image. ``slide``: mmseg's sliding window, crops of
    ``crop`` (h, w) every ``stride`` (h, w), logits of overlapping crops averaged. ``tta``:
    the image at each of ``ratios`` times its original size (made by :class:`TTAResize` in the
    dataset), each also flipped when ``flip``; each pass in ``whole`` or ``slide`` mode, its
    logits flipped back and resized to the label size; the softmax probabilities averaged, as
    mmseg's ``SegTTAModel.merge_preds`` does.
    """
    mode: str = "whole"
    crop: tuple = (1024, 1024)
    stride: tuple = (768, 768)
    tta: bool = False
    ratios: tuple = TTA_RATIOS
    flip: bool = True

    @classmethod
    def from_config(cls, cfg):
        ev = cfg["eval"]
        return cls(ev["mode"], tuple(ev["crop_size"]), tuple(ev["stride"]), ev["tta"],
                   tuple(ev["tta_ratios"]), ev["tta_flip"])

    @property
    def name(self):
        """``whole``, ``slide``, ``whole-tta`` or ``slide-tta``: logs and file names."""
        return f"{self.mode}-tta" if self.tta else self.mode


WHOLE = InferenceMode()


def _forward(model, batch, amp):
    with amp.autocast() if amp is not None else contextlib.nullcontext():
        return model(batch).float()


def slide_logits(model, batch, crop, stride, amp=None):
    """mmseg's ``slide_inference``: crops of ``crop`` (h, w) every ``stride`` (h, w), the last
    row/column aligned to the border; a crop larger than the image is the whole image."""
    (h_crop, w_crop), (h_stride, w_stride) = crop, stride
    n, _, h, w = batch.shape
    h_grids = max(h - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(w - w_crop + w_stride - 1, 0) // w_stride + 1
    total, count = None, batch.new_zeros((1, 1, h, w))
    for gy in range(h_grids):
        for gx in range(w_grids):
            y2, x2 = min(gy * h_stride + h_crop, h), min(gx * w_stride + w_crop, w)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            logits = _forward(model, batch[:, :, y1:y2, x1:x2], amp)
            if total is None:
                total = batch.new_zeros((n, logits.shape[1], h, w))
            total[:, :, y1:y2, x1:x2] += logits
            count[:, :, y1:y2, x1:x2] += 1
    return total / count


def _logits_at_input(model, batch, mode, amp):
    if mode.mode == "slide":
        return slide_logits(model, batch, mode.crop, mode.stride, amp)
    return _forward(model, batch, amp)


@torch.no_grad()
def predict_logits(model, image, out_size, amp=None, mode=WHOLE):
    """``image``: uint8 CHW (or NCHW) RGB tensor on the model's device, or for TTA the list of
    its rescaled versions -> float N x C x out_size: logits, or for TTA the averaged softmax
    probabilities (argmax is the prediction either way)."""
    if not mode.tta:
        batch = _NORMALIZE(image[None] if image.dim() == 3 else image)
        return resize(_logits_at_input(model, batch, mode, amp), out_size)
    if not isinstance(image, (list, tuple)):
        raise ValueError("TTA needs the list of rescaled images (TTAResize)")
    total, passes = 0.0, 0
    for scaled in image:
        batch = _NORMALIZE(scaled[None] if scaled.dim() == 3 else scaled)
        for flip in (False, True) if mode.flip else (False,):
            logits = _logits_at_input(model, batch.flip(-1) if flip else batch, mode, amp)
            logits = logits.flip(-1) if flip else logits
            total = total + resize(logits, out_size).softmax(dim=1)
            passes += 1
    return total / passes
