"""Online hard example mining for the cross-entropy (mmseg's ``OHEMPixelSampler``).

Per head and batch: among labelled pixels, those whose predicted probability of the true class
is below ``max(thresh, p_k)`` get weight 1, the rest 0, where ``p_k`` is the
``min_kept * batch``-th smallest such probability (so at least that many pixels are kept when
there are that many). The weighted cross-entropy is then averaged over all pixels, as mmseg's
default loss does. Used by the ``bisenetv2_fcn_ohem`` recipe (thresh 0.7, min_kept 10000).
"""
import torch
import torch.nn.functional as F


@torch.no_grad()
def ohem_weights(logits, label, ignore_index=255, thresh=0.7, min_kept=10000):
    """Per-pixel 0/1 weights (float, shape of ``label``) selecting the hard pixels."""
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
