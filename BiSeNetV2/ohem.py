"""Online hard example mining for the cross-entropy (mmseg's ``OHEMPixelSampler``), per head.

Per head and batch: among labelled pixels, those whose predicted probability of the true class
is below ``max(thresh, p_k)`` get weight 1, the rest 0, where ``p_k`` is the
``min_kept * batch``-th smallest such probability (so at least that many pixels are kept when
there are that many). The weighted cross-entropy is then averaged over all pixels, as mmseg's
default loss does. The ``bisenetv2_fcn_ohem`` recipe applies it to every head (thresh 0.7,
min_kept 10000); ``loss.ohem`` may also name the heads one by one.
"""
import torch
import torch.nn.functional as F

from common.errors import UserError

OHEM_KEYS = {"thresh": 0.7, "min_kept": 10000}


@torch.no_grad()
def ohem_weights(logits, label, ignore_index=255, thresh=0.7, min_kept=10000):
    """Per-pixel 0/1 weights (float, shape of ``label``) selecting the hard pixels; ``logits``
    at the label's size."""
    valid = label != ignore_index
    weights = torch.zeros(label.shape, dtype=torch.float32, device=label.device)
    prob = F.softmax(logits.float(), dim=1)
    target = torch.where(valid, label, torch.zeros_like(label))
    true_prob = prob.gather(1, target.unsqueeze(1)).squeeze(1)[valid]
    if true_prob.numel() == 0:
        return weights
    kept = min(min_kept * label.shape[0], true_prob.numel() - 1)
    threshold = max(true_prob.sort().values[kept].item(), thresh)
    weights[valid] = (true_prob < threshold).float()
    return weights


def _settings(value, where):
    if not (isinstance(value, dict) and set(value) <= set(OHEM_KEYS)):
        raise UserError(f"config key {where} must be null or {{thresh: (0, 1], min_kept: int "
                        f">= 1}}, got {value!r}")
    settings = {**OHEM_KEYS, **value}
    thresh, min_kept = settings["thresh"], settings["min_kept"]
    if not (isinstance(thresh, (int, float)) and not isinstance(thresh, bool)
            and 0 < thresh <= 1 and isinstance(min_kept, int) and not isinstance(min_kept, bool)
            and min_kept >= 1):
        raise UserError(f"config key {where} must be null or {{thresh: (0, 1], min_kept: int "
                        f">= 1}}, got {value!r}")
    return settings


def ohem_per_head(value, heads):
    """``loss.ohem`` -> ``{head: settings or None}``. ``value`` is null (no OHEM), one
    ``{thresh, min_kept}`` for every head, or ``{head: {thresh, min_kept} | null}`` naming
    heads of ``heads`` (heads not named get none)."""
    if value is None:
        return dict.fromkeys(heads)
    if isinstance(value, dict) and value and not set(value) <= set(OHEM_KEYS):
        unknown = sorted(set(value) - set(heads))
        if unknown:
            raise UserError(f"config key loss.ohem names {', '.join(unknown)}: neither a head "
                            f"({', '.join(heads)}) nor thresh / min_kept")
        return {head: None if value.get(head) is None
                else _settings(value[head], f"loss.ohem.{head}") for head in heads}
    return dict.fromkeys(heads, _settings(value, "loss.ohem"))
