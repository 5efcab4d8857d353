"""Train / evaluate BiSeNetV1 on Cityscapes (mmseg's bisenetv1_r50-d32 / r18-d32 recipes).

    python3 train.py --data_path /data/cityscapes                 # R50-D32, 160k, from scratch
    python3 train.py                                             # 300 iterations, synthetic data
    python3 train.py --config configs/bisenetv1_r18-d32_cityscapes-1024x1024_160k.yaml ...
    python3 train.py --eval-only --checkpoint work_dirs/.../iter_160000.pth

The whole recipe is here and in configs/: dataset, network, loss (CE on the decode head and both
auxiliary heads), SGD with the warm-up + poly schedule, and the loop. Device, AMP, processes,
checkpoints, logging and evaluation are library calls into common/. A work dir that holds a
checkpoint resumes from it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from BiSeNetV1.bisenetv1 import BiSeNetV1  # noqa: E402
from common import cityscapes, cli, training  # noqa: E402
from common.errors import user_errors  # noqa: E402
from common.evaluation import evaluate_checkpoint, evaluator_for  # noqa: E402
from common.losses import heads_cross_entropy  # noqa: E402
from common.lr_schedule import schedule_from_config, set_lr  # noqa: E402
from common.submission import add_submission_flags, write_submission  # noqa: E402

NAME = "BiSeNetV1"
MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
RECIPE = "bisenetv1_r50-d32_cityscapes-1024x1024_160k.yaml"
SMOKE_RECIPE = "bisenetv1_r50-d32_synthetic-smoke.yaml"   # without --data_path


def main(argv=None):
    parser = cli.train_parser(NAME)
    add_submission_flags(parser)  # --format-only: a Cityscapes benchmark submission
    args = parser.parse_args(argv)
    cfg, config_path = cli.resolve_config(args, MODEL_DIR, RECIPE, SMOKE_RECIPE, BiSeNetV1)
    with training.start(NAME, args, cfg, config_path, MODEL_DIR) as rt:
        ## dataset: Cityscapes labelTrainIds (synthetic without --data_path), checked at start
        sets = cityscapes.datasets(args, cfg, rt, MODEL_DIR)
        if sets is None:  # --check-data, --prepare-data
            return None
        evaluate = evaluator_for(sets, cfg, rt, cityscapes, args)

        ## model: ResNet context path + spatial path, FCN decode head, two auxiliary heads
        model = BiSeNetV1(**cfg["model"])
        if args.format_only:
            return write_submission(model, args, cfg, rt, sets.root, MODEL_DIR)
        if args.eval_only:
            return evaluate_checkpoint(model, evaluate, args.checkpoint, MODEL_DIR)
        if args.pretrained:
            training.load_pretrained(model.backbone.context_path.backbone, args.pretrained, rt)

        ## loss: cross-entropy on every head, weighted by loss.weights (mmseg: 1.0 each)
        weights, ignore = cfg["loss"]["weights"], cfg["data"]["ignore_index"]

        ## optimizer: SGD on all parameters; lr = warm-up then poly (closed form, per iteration)
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
