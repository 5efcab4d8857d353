"""Train / evaluate BiSeNetV2 on Cityscapes (mmseg's bisenetv2_fcn recipes).

    python3 train.py --data_path /data/cityscapes                 # 160k, from scratch
    python3 train.py                                             # 300 iterations, synthetic data
    python3 train.py --config configs/bisenetv2_fcn_ohem_cityscapes-1024x1024_160k.yaml ...
    python3 train.py --eval-only --checkpoint work_dirs/.../iter_160000.pth

The whole recipe is here and in configs/: dataset, network, loss (CE on the decode head and the
four auxiliary heads, OHEM per head from ``loss.ohem``), SGD over two parameter groups (the
decode head's lr x ``optim.decode_lr_mult``) with the warm-up + poly schedule, and the loop.
Device, AMP, processes, checkpoints, logging and evaluation are library calls into common/.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from BiSeNetV2.bisenetv2 import BiSeNetV2  # noqa: E402
from BiSeNetV2.ohem import ohem_per_head, ohem_weights  # noqa: E402
from common import cityscapes, cli, training  # noqa: E402
from common.errors import UserError, user_errors  # noqa: E402
from common.evaluation import evaluate_checkpoint, evaluator_for  # noqa: E402
from common.losses import cross_entropy, label_size_logits, weighted_total  # noqa: E402
from common.lr_schedule import schedule_from_config, set_lr  # noqa: E402
from common.submission import add_submission_flags, write_submission  # noqa: E402

NAME = "BiSeNetV2"
MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
RECIPE = "bisenetv2_fcn_cityscapes-1024x1024_160k.yaml"
SMOKE_RECIPE = "bisenetv2_fcn_synthetic-smoke.yaml"   # without --data_path
# this model's config keys (validated here): per-head OHEM and the decode head's lr multiplier
OWN_KEYS = {"loss": {"ohem": None}, "optim": {"decode_lr_mult": 1.0}}
# shared flags this model has no use for (refused, not ignored)
UNHONOURED = {"pretrained": "it has no ImageNet backbone (mmseg's recipe trains it "
                             "from scratch)"}


def parameter_groups(model, decode_lr_mult):
    """Backbone and auxiliary heads at the scheduled lr, the decode head at ``decode_lr_mult``
    times it (``common.lr_schedule.set_lr`` reads ``lr_mult``; the optimizer's state_dict
    keeps it, so a resumed run keeps the multiplier)."""
    decode = list(model.decode_head.parameters())
    in_decode = {id(p) for p in decode}
    rest = [p for p in model.parameters() if id(p) not in in_decode]
    return [{"params": rest, "lr_mult": 1.0}, {"params": decode, "lr_mult": decode_lr_mult}]


def main(argv=None):
    parser = cli.train_parser(NAME)
    add_submission_flags(parser)  # --format-only: a Cityscapes benchmark submission
    args = parser.parse_args(argv)
    cfg, config_path = cli.resolve_config(args, MODEL_DIR, RECIPE, SMOKE_RECIPE, BiSeNetV2,
                                          OWN_KEYS, UNHONOURED)
    ignore = cfg["data"]["ignore_index"]
    weights = cfg["loss"]["weights"]
    ohem = ohem_per_head(cfg["loss"]["ohem"], list(weights))
    if not cfg["optim"]["decode_lr_mult"] > 0:
        raise UserError(f"config key optim.decode_lr_mult must be > 0, got "
                            f"{cfg['optim']['decode_lr_mult']}")
    with training.start(NAME, args, cfg, config_path, MODEL_DIR) as rt:
        ## dataset: Cityscapes labelTrainIds (synthetic without --data_path), checked at start
        sets = cityscapes.datasets(args, cfg, rt, MODEL_DIR)
        if sets is None:  # --check-data, --prepare-data
            return None
        evaluate = evaluator_for(sets, cfg, rt, cityscapes, args)

        ## model: detail + semantic branches, BGA fusion, FCN decode head, four auxiliary heads
        model = BiSeNetV2(**cfg["model"])
        if args.format_only:
            return write_submission(model, args, cfg, rt, sets.root, MODEL_DIR)
        if args.eval_only:
            return evaluate_checkpoint(model, evaluate, args.checkpoint, MODEL_DIR)

        ## loss: cross-entropy on every head (weights from loss.weights), OHEM where set
        def criterion(outputs, labels):
            losses = {}
            for head, logits in outputs.items():
                if ohem.get(head) is None:
                    losses[head] = cross_entropy(logits, labels, ignore)
                    continue
                logits = label_size_logits(logits, labels)
                hard = ohem_weights(logits, labels, ignore, **ohem[head])
                losses[head] = cross_entropy(logits, labels, ignore, hard)
            return weighted_total(losses, weights)

        ## optimizer: SGD over two groups; lr = warm-up then poly, x each group's lr_mult
        optimizer = training.sgd(parameter_groups(model, cfg["optim"]["decode_lr_mult"]),
                                 cfg["optim"], rt.amp)
        lr_of = schedule_from_config(cfg, training.iters_per_epoch(sets.train, cfg, rt))

        ## train loop
        loop = training.TrainLoop(model, optimizer, sets.train, evaluate, rt, cfg, args)
        for iteration, images, labels in loop:
            set_lr(optimizer, lr_of(iteration))
            with rt.amp.autocast():
                outputs = loop.model(images)
            loop.step(*criterion(outputs, labels))
        return loop.metrics


if __name__ == "__main__":
    with user_errors():
        main()
