"""Cross-entropy as mmseg computes it, and the weighted sum of the heads' losses.

A model's train.py composes its own criterion from these: which heads, their weights, and any
per-pixel weighting (BiSeNetV2's hard-pixel mining) are the model's.
"""
import torch.nn.functional as F

from common.errors import UserError
from common.layers import resize


def cross_entropy(logits, label, ignore_index=255, pixel_weights=None):
    """Mean cross-entropy over all pixels, ignored ones counting zero (mmseg's
    ``CrossEntropyLoss`` default, ``avg_non_ignore=False``), logits resized (bilinear) to the
    label size first; ``pixel_weights`` (shape of ``label``) weight each pixel's term."""
    if tuple(logits.shape[-2:]) != tuple(label.shape[-2:]):
        logits = resize(logits, label.shape[-2:])
    pixel_loss = F.cross_entropy(logits.float(), label, ignore_index=ignore_index,
                                 reduction="none")
    if pixel_weights is not None:
        pixel_loss = pixel_loss * pixel_weights
    return pixel_loss.mean()


def weighted_total(losses, weights):
    """``{head: loss}`` and ``{head: weight}`` -> (sum of weight x loss, log terms
    ``{"<head>.loss_ce": loss}``)."""
    total, terms = 0.0, {}
    for head, loss in losses.items():
        if head not in weights:
            raise UserError(f"config loss.weights has no weight for head {head!r}; heads are "
                            f"{', '.join(losses)}")
        terms[f"{head}.loss_ce"] = loss.detach()
        total = total + weights[head] * loss
    return total, terms


def heads_cross_entropy(outputs, label, weights, ignore_index=255):
    """The plain recipe: :func:`cross_entropy` on every head, summed with ``weights``."""
    return weighted_total({head: cross_entropy(logits, label, ignore_index)
                           for head, logits in outputs.items()}, weights)
