"""Train / evaluate PSPNet on PASCAL VOC 2012 + SBD (mmseg's pspnet_r50-d8 voc12aug recipe).

    python3 train.py --data_path /data/VOCdevkit --pretrained resnet50_v1c.pth   # 20k
    python3 train.py                                             # 300 iterations, synthetic data
    python3 train.py --config configs/pspnet_r50-d8_voc12aug-512x512_seed-8p-10k.yaml ...
    python3 train.py --eval-only --checkpoint work_dirs/.../iter_20000.pth

The whole recipe is here and in configs/: dataset (VOC train + SBD aug), network, loss (CE 1.0
on the PSP head, 0.4 on the auxiliary FCN head), SGD with the poly schedule, and the loop. Device, AMP, processes,
checkpoints, logging and evaluation are library calls into common/. A work dir that holds a
checkpoint resumes from it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cli, training  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.evaluation import evaluate_checkpoint, evaluator_for  # noqa: E402
from common.losses import heads_cross_entropy  # noqa: E402
from common.lr_schedule import schedule_from_config, set_lr  # noqa: E402
from PSPNet import voc  # noqa: E402
from PSPNet.pspnet import PSPNet  # noqa: E402

NAME = "PSPNet"
MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
RECIPE = "pspnet_r50-d8_voc12aug-512x512_20k.yaml"
SMOKE_RECIPE = "pspnet_r50-d8_synthetic-voc-smoke.yaml"   # without --data_path


def main(argv=None):
    args = cli.train_parser(NAME).parse_args(argv)
    cfg, config_path = cli.resolve_config(args, MODEL_DIR, RECIPE, SMOKE_RECIPE, PSPNet)
    with training.start(NAME, args, cfg, config_path, MODEL_DIR) as rt:
        ## dataset: VOC train + SBD aug, VOC val (synthetic without --data_path), checked at start
        sets = voc.datasets(args, cfg, rt)
        if sets is None:  # --check-data, --prepare-data
            return None
        evaluate = evaluator_for(sets, cfg, rt, voc, args)

        ## model: dilated ResNetV1c-50, pyramid pooling head, auxiliary FCN head on stage 3
        model = PSPNet(**cfg["model"])
        if args.eval_only:
            return evaluate_checkpoint(model, evaluate, args.checkpoint, MODEL_DIR)
        if args.pretrained:
            training.load_pretrained(model.backbone, args.pretrained, rt)

        ## loss: cross-entropy on both heads, weighted by loss.weights (mmseg: 1.0 and 0.4)
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
