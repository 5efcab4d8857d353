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
    at the label's size.

    No host-device synchronisation (it runs for every OHEM head at every iteration): no
    ``.item()``, no boolean-mask indexing, no branch on a tensor's value. The ``kept``-th
    smallest labelled probability, ``kept = min(min_kept * batch, labelled - 1)``, is read on
    the device from the ``min_kept * batch + 1`` smallest of all pixels (a size known from the
    shapes), unlabelled pixels ranked last as +inf. A NaN probability (a diverged run) ranks
    last as ``sort`` puts it: if the ``kept``-th is one, the threshold is NaN and no pixel is
    kept, as before. Same weights as sorting the labelled pixels on the host, bit for bit
    (tests/test_ohem_syncs.py)."""
    if label.numel() == 0:
        return torch.zeros(label.shape, dtype=torch.float32, device=label.device)
    valid = label != ignore_index
    prob = F.softmax(logits.float(), dim=1)
    target = torch.where(valid, label, torch.zeros_like(label))
    true_prob = prob.gather(1, target.unsqueeze(1)).squeeze(1)
    ranked = valid & ~torch.isnan(true_prob)  # labelled, not NaN: sorted first, ascending
    candidates = torch.where(ranked, true_prob, float("inf")).flatten()
    k = min(min_kept * label.shape[0] + 1, candidates.numel())
    smallest = candidates.topk(k, largest=False, sorted=True).values
    kept = (valid.sum() - 1).clamp(0, k - 1)  # min(min_kept * batch, labelled - 1)
    p_k = smallest.gather(0, kept.view(1)).squeeze(0)
    p_k = torch.where(kept < ranked.sum(), p_k, float("nan"))  # the kept-th sorted is NaN
    threshold = p_k.clamp_min(thresh)  # max(p_k, thresh) in float32; NaN stays NaN
    return (valid & (true_prob < threshold)).float()


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
