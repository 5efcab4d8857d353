"""Segmentation metrics from one confusion matrix over the whole evaluation set (mmseg's
definition, not an average of per-image scores).

IoU_c = TP / (TP + FP + FN), NaN when class c is neither labelled nor predicted;
Acc_c = TP / (TP + FN), NaN when c is never labelled; mIoU / mAcc = mean over non-NaN classes;
aAcc = correct / labelled pixels.
"""
import math

import torch


def confusion_matrix(pred, label, num_classes, ignore_index=255):
    """``cm[true, pred]`` counts (int64) over pixels whose label is not ignored."""
    keep = label != ignore_index
    index = label[keep].long() * num_classes + pred[keep].long()
    return torch.bincount(index, minlength=num_classes ** 2).view(num_classes, num_classes)


def compute_metrics(cm):
    """Return {'aAcc', 'mIoU', 'mAcc' (percent), 'IoU', 'Acc' (per-class lists, percent)}."""
    cm = cm.double()
    tp = cm.diag()
    labelled = cm.sum(dim=1)
    predicted = cm.sum(dim=0)
    union = labelled + predicted - tp
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    acc = torch.where(labelled > 0, tp / labelled.clamp(min=1), nan)
    total = labelled.sum()

    def nanmean(t):
        valid = t[~torch.isnan(t)]
        return float(valid.mean()) * 100 if valid.numel() else float("nan")
    return {"aAcc": float(tp.sum() / total) * 100 if total > 0 else float("nan"),
            "mIoU": nanmean(iou), "mAcc": nanmean(acc),
            "IoU": [float(v) * 100 for v in iou], "Acc": [float(v) * 100 for v in acc]}


def per_class_table(class_names, metrics, mode="whole"):
    """The per-class IoU / Acc table as text lines, headed by the inference mode."""
    width = max(len("Class"), *(len(n) for n in class_names))
    rule = f"+-{'-' * width}-+--------+--------+"
    lines = [f"Per-class results ({mode} inference):", rule,
             f"| {'Class':<{width}} |   IoU  |   Acc  |", rule]
    for name, iou, acc in zip(class_names, metrics["IoU"], metrics["Acc"]):
        cells = [" nan  " if math.isnan(v) else f"{v:6.2f}" for v in (iou, acc)]
        lines.append(f"| {name:<{width}} | {cells[0]} | {cells[1]} |")
    lines.append(rule)
    return lines
