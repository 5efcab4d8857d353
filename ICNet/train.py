"""Train / evaluate ICNet on Cityscapes (mmseg's icnet_r50-d8 832x832 recipes).

    python3 train.py --data_path /data/cityscapes                 # 80k, from scratch
    python3 train.py                                             # 300 iterations, synthetic data
    python3 train.py --config configs/icnet.yaml                 # the seed's config (paths keys)
    python3 train.py --eval-only --checkpoint work_dirs/.../iter_80000.pth

The whole recipe is here and in configs/: dataset, network, loss (CE 1.0 on the decode head,
0.4 on each cascade-label-guidance head), SGD with the poly schedule, and the loop. Device, AMP, processes,
checkpoints, logging and evaluation are library calls into common/. A work dir that holds a
checkpoint resumes from it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cityscapes, cli, training  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.evaluation import evaluate_checkpoint, evaluator_for  # noqa: E402
from common.losses import heads_cross_entropy  # noqa: E402
from common.lr_schedule import schedule_from_config, set_lr  # noqa: E402
from common.submission import add_submission_flags, write_submission  # noqa: E402
from ICNet.icnet import ICNet  # noqa: E402

NAME = "ICNet"
MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
RECIPE = "icnet_r50-d8_cityscapes-832x832_80k.yaml"
SMOKE_RECIPE = "icnet_r50-d8_synthetic-smoke.yaml"   # without --data_path


def main(argv=None):
    parser = cli.train_parser(NAME)
    add_submission_flags(parser)  # --format-only: a Cityscapes benchmark submission
    args = parser.parse_args(argv)
    cfg, config_path = cli.resolve_config(args, MODEL_DIR, RECIPE, SMOKE_RECIPE, ICNet)
    with training.start(NAME, args, cfg, config_path, MODEL_DIR) as rt:
        ## dataset: Cityscapes labelTrainIds (synthetic without --data_path), checked at start
        sets = cityscapes.datasets(args, cfg, rt, MODEL_DIR)
        if sets is None:  # --check-data, --prepare-data
            return None
        evaluate = evaluator_for(sets, cfg, rt, cityscapes, args)

        ## model: image cascade (1, 1/2, 1/4) over a dilated ResNetV1c-50, cascade feature
        ## fusion neck, FCN decode head, two auxiliary heads
        model = ICNet(**cfg["model"])
        if args.format_only:
            return write_submission(model, args, cfg, rt, sets.root, MODEL_DIR)
        if args.eval_only:
            return evaluate_checkpoint(model, evaluate, args.checkpoint, MODEL_DIR)
        if args.pretrained:
            training.load_pretrained(model.backbone.backbone, args.pretrained, rt)

        ## loss: cross-entropy on every head, weighted by loss.weights (mmseg: 1.0, 0.4, 0.4)
        weights, ignore = cfg["loss"]["weights"], cfg["data"]["ignore_index"]

        ## optimizer: SGD on all parameters; lr = poly decay (closed form, per iteration)
        optimizer = training.sgd(model.parameters(), cfg["optim"], rt.amp)
        lr_of = schedule_from_config(cfg, training.iters_per_epoch(sets.train, cfg, rt))

        ## train loop
        loop = training.TrainLoop(model, optimizer, sets.train, evaluate, rt, cfg, args)
        for iteration, images, labels in loop:
            set_lr(optimizer, lr_of(iteration))
            with rt.amp.autocast():
                outputs = loop.model(images)
            loop.step(*heads_cross_entropy(outputs, labels, weights, ignore))
        return loop.metrics


if __name__ == "__main__":
    with user_errors():
        main()
