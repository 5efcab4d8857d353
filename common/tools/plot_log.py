"""Training curves from a log: loss (each term), learning rate, images/s and validation mIoU
against iteration, one PNG.

    python3 -m common.tools.plot_log work_dirs/x/train_rank0.log --out curves.png

The full training scripts call it at the end, leaving ``curves.png`` beside their logs.
"""
import os
import sys

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.errors import ArgParser, UserError, user_errors  # noqa: E402
from common.logfmt import parse_log  # noqa: E402

NOT_LOSSES = {"iter", "max_iters", "lr", "time", "data_time", "data_wait_pct", "images/s", "memory"}


def loss_terms(records):
    """Loss keys in log order: the total first, then each head's term."""
    keys = []
    for record in records:
        keys += [k for k in record if k not in NOT_LOSSES and k not in keys]
    return keys


def plot_curves(parsed, out_path, title=""):
    """Write the 2x2 figure for a parsed log (:func:`common.logfmt.parse_log`)."""
    train, val = parsed["train"], parsed["val"]
    if not train:
        raise UserError("the log has no 'Iter(train)' lines to plot; pass a training log")
    iters = [r["iter"] for r in train]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    (ax_loss, ax_lr), (ax_speed, ax_val) = axes
    for key in loss_terms(train):
        points = [(r["iter"], r[key]) for r in train if key in r]
        ax_loss.plot(*zip(*points), label=key, linewidth=2 if key == "loss" else 1)
    ax_loss.set_title("loss")
    ax_loss.legend(fontsize=8)
    ax_lr.plot(iters, [r["lr"] for r in train], color="tab:orange")
    ax_lr.set_title("learning rate")
    ax_speed.plot(iters, [r["images/s"] for r in train], color="tab:green")
    ax_speed.set_title("images/s")
    modes = sorted({r.get("mode", "whole") for r in val})
    for mode in modes:  # eval-only runs in other modes append to the same log
        points = [(r["iter"], r["mIoU"]) for r in val if r.get("mode", "whole") == mode]
        ax_val.plot(*zip(*points), marker="o", label=mode)
    if len(modes) > 1:
        ax_val.legend(fontsize=8)
    if not val:
        ax_val.text(0.5, 0.5, "no evaluation in this log", ha="center", va="center",
                    transform=ax_val.transAxes)
    ax_val.set_title("validation mIoU (%)")
    for ax in axes.flat:
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    fig.savefig(out_path, dpi=80)
    plt.close(fig)
    return out_path


def main(argv=None):
    p = ArgParser(description="Plot training curves from a training log.")
    p.add_argument("log", help="a training log (train_rank0.log or a script's train_N.log)")
    p.add_argument("--out", default=None, help="PNG path (default: curves.png beside the log)")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    if not os.path.isfile(args.log):
        raise UserError(f"log {args.log} does not exist; pass a training log")
    with open(args.log, errors="replace") as f:
        parsed = parse_log(f)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.log)), "curves.png")
    print(f"Curves written to {plot_curves(parsed, out, args.title)}")


if __name__ == "__main__":
    with user_errors():
        main()
