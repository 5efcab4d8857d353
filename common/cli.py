"""The flags every model's train.py takes (the seeds' set, DESIGN.md) and how they override
its YAML recipe. A train.py calls :func:`train_parser`, may add flags of its own, then
:func:`resolve_config`.
"""
import argparse
import os

from common.config import load_config, parse_cfg_option
from common.device import DEVICE_CHOICES
from common.errors import ArgParser, UserError


def train_parser(name):
    p = ArgParser(description=f"Train / evaluate {name}.")
    p.add_argument("--data_path", "--data-path", dest="data_path", default=None,
                   help="dataset root (default: the synthetic dataset, generated once)")
    p.add_argument("--config", default=None,
                   help="YAML recipe (default: the model's recipe, or its synthetic smoke "
                        "recipe without --data_path)")
    p.add_argument("--work-dir", "--work_dir", "--save_dir", dest="work_dir", default=None,
                   help="checkpoints and logs (default work_dirs/<config name>); --save_dir is "
                        "PaddleSeg's spelling")
    p.add_argument("--load-from", dest="load_from", default=None,
                   help="initialise weights from a checkpoint (fine-tuning; iteration 0)")
    p.add_argument("--resume-from", dest="resume_from", default=None,
                   help="resume a run from this checkpoint (default: the work dir's latest)")
    p.add_argument("--pretrained", default=None,
                   help="ImageNet ResNet weights (torchvision or mmcv format) for the backbone")
    p.add_argument("--no-validate", dest="no_validate", action="store_true",
                   help="skip evaluation during and after training")
    p.add_argument("--do_eval", action="store_true",
                   help="PaddleSeg's flag: evaluation during training is already the default")
    p.add_argument("--eval-only", dest="eval_only", action="store_true",
                   help="evaluate --checkpoint (default: the work dir's latest) and exit")
    p.add_argument("--checkpoint", default=None, help="checkpoint for --eval-only")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--device_list", "--device-list", dest="device_list", default=None,
                   help="comma-separated device ids, one per local rank")
    p.add_argument("--amp", action="store_true", help="mixed precision (O1 unless --opt-level)")
    p.add_argument("--opt-level", "--opt_level", dest="opt_level", default=None,
                   choices=("O0", "O1", "O2"))
    p.add_argument("--loss-scale", "--loss_scale", dest="loss_scale", default=None,
                   help="'dynamic' (the seeds' -1) or a number")
    p.add_argument("--apex", action="store_true", default=None,
                   help="use apex amp (must be installed)")
    p.add_argument("--sync_bn", "--sync-bn", dest="sync_bn", action="store_true", default=None,
                   help="SyncBatchNorm across processes where the backend supports it")
    p.add_argument("--prof", action="store_true", help="profile 5 iterations (Chrome trace)")
    p.add_argument("--prof_test", "--prof-test", dest="prof_test", action="store_true",
                   help="profile inference on 5 evaluation images after 2 of warm-up (Chrome "
                        "trace profile_test_trace.json in the work dir); implies --eval-only")
    p.add_argument("--warm_up_epochs", "--warm-up-epochs", dest="warm_up_epochs", type=float,
                   default=None, help="linear warm-up length in epochs of the training set "
                                      "(the seed's flag; schedule.warmup_epochs)")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=None,
                   help="images per device")
    p.add_argument("--max_iters", "--max-iters", dest="max_iters", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--eval_interval", "--eval-interval", dest="eval_interval", type=int,
                   default=None)
    p.add_argument("--save_interval", "--checkpoint-interval", dest="save_interval", type=int,
                   default=None, help="checkpoint every N iterations (PaddleSeg's spelling)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers per device")
    p.add_argument("--log-file", dest="log_file", default=None,
                   help="per-rank log path; '{rank}' is replaced (default "
                        "<work-dir>/train_rank{rank}.log)")
    p.add_argument("--eval-mode", "--eval_mode", dest="eval_mode", default=None,
                   choices=("whole", "slide"), help="evaluation inference (default: config eval.mode)")
    p.add_argument("--slide-crop", "--slide_crop", dest="slide_crop", type=pair, default=None,
                   metavar="H,W", help="slide-mode crop size (default: config eval.crop_size)")
    p.add_argument("--slide-stride", "--slide_stride", dest="slide_stride", type=pair,
                   default=None, metavar="H,W", help="slide-mode stride (default: eval.stride)")
    p.add_argument("--tta", action="store_true",
                   help="multi-scale (eval.tta_ratios) + flip test-time augmentation")
    p.add_argument("--show-dir", "--show_dir", dest="show_dir", default=None,
                   help="write input | ground truth | prediction | error map per evaluated image")
    p.add_argument("--tensorboard", "--use_vdl", dest="tensorboard", action="store_true",
                   help="also log scalars to <work-dir>/tensorboard (needs tensorboard); "
                        "--use_vdl is PaddleSeg's spelling (VisualDL)")
    p.add_argument("--channels-last", "--channels_last", dest="channels_last",
                   action="store_true", default=None,
                   help="NHWC memory format for training (fast path)")
    p.add_argument("--device-augment", "--device_augment", dest="device_augment",
                   action="store_true", default=None,
                   help="train transforms on the device; workers decode")
    p.add_argument("--compile", action="store_true", default=None,
                   help="torch.compile the training model (first iterations compile)")
    p.add_argument("--keep", type=int, default=None, metavar="N",
                   help="keep the newest N checkpoints (never the one 'latest' names); 0 = all")
    p.add_argument("--nan-policy", "--nan_policy", dest="nan_policy", default=None,
                   choices=("stop", "skip"),
                   help="non-finite gradients without AMP dynamic scaling: stop keeping the "
                        "last good checkpoint (default) or skip the step")
    p.add_argument("--check-data", "--check_data", dest="check_data", action="store_true",
                   help="scan the train and val sets, report every problem, and exit")
    p.add_argument("--prepare-data", "--prepare_data", dest="prepare_data",
                   action="store_true",
                   help="decode the train and val sets once into the decoded-data cache "
                        "($SEGZOO_DECODED; used automatically from then on) and exit; "
                        "--workers processes, resumable")
    p.add_argument("--cfg-options", dest="cfg_options", nargs="+", default=[],
                   metavar="SECTION.KEY=VALUE", help="override any config value")
    return p


def pair(text):
    """``H,W`` (or ``HxW``) -> [H, W] of positive integers."""
    parts = text.replace("x", ",").split(",")
    try:
        values = [int(v) for v in parts]
    except ValueError:
        values = []
    if len(values) != 2 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not H,W (two positive integers)")
    return values


FLAG_TO_KEY = {"batch_size": "data.batch_size", "max_iters": "schedule.max_iters",
               "lr": "optim.lr", "eval_interval": "runtime.eval_interval",
               "save_interval": "runtime.checkpoint_interval",
               "seed": "runtime.seed", "workers": "data.num_workers",
               "opt_level": "runtime.opt_level", "loss_scale": "runtime.loss_scale",
               "keep": "runtime.max_keep_ckpts", "eval_mode": "eval.mode",
               "slide_crop": "eval.crop_size", "slide_stride": "eval.stride",
               "device_augment": "data.device_augment", "channels_last": "runtime.channels_last",
               "sync_bn": "runtime.sync_bn", "compile": "runtime.compile",
               "apex": "runtime.apex", "nan_policy": "runtime.nan_policy",
               "warm_up_epochs": "schedule.warmup_epochs"}


INPUT_FILES = {"resume_from": "--resume-from", "load_from": "--load-from",
               "pretrained": "--pretrained"}


def check_input_files(args):
    """The weight files the flags name exist, before any work starts."""
    for attr, flag in INPUT_FILES.items():
        path = getattr(args, attr)
        if path and not os.path.isfile(path):
            problem = "is not a file" if os.path.exists(path) else "does not exist"
            raise UserError(f"{flag} {path} {problem}; check the path")


def resolve_config(args, model_dir, recipe, smoke_recipe, model, own=None, unhonoured=None):
    """(resolved config, its path): ``--config``, else ``configs/<recipe>`` with
    ``--data_path`` and ``configs/<smoke_recipe>`` (synthetic data) without; then
    ``--cfg-options`` and the flags on top. ``unhonoured``: ``{flag dest: why}`` for the
    shared flags this model has no use for; giving one is an error, not a silent no-op."""
    for dest, why in (unhonoured or {}).items():
        if getattr(args, dest) not in (None, False):
            raise UserError(f"--{dest} does not apply to {model.__name__}: {why}; drop it")
    check_input_files(args)
    default = recipe if args.data_path else smoke_recipe
    path = args.config or os.path.join(model_dir, "configs", default)
    overrides = [parse_cfg_option(o) for o in args.cfg_options]
    for flag, key in FLAG_TO_KEY.items():
        value = getattr(args, flag)
        if value is not None:
            if flag == "loss_scale" and value != "dynamic":
                try:
                    value = float(value)
                except ValueError:
                    raise UserError(f"--loss-scale {value!r} is neither 'dynamic' nor a "
                                    "number") from None
                value = "dynamic" if value == -1 else value  # the seeds' -1 means dynamic
            overrides.append((key, value))
    if args.prof_test:
        args.eval_only = True
    if args.do_eval and args.no_validate:
        raise UserError("--do_eval contradicts --no-validate; drop one of them")
    if args.tta:
        overrides.append(("eval.tta", True))
    if args.amp:
        if args.opt_level == "O0":
            raise UserError("--amp contradicts --opt-level O0; drop one of them")
        overrides.append(("runtime.amp", True))
    cfg = load_config(path, overrides, model, own or {})  # training: every key must be known
    if cfg["runtime"]["amp"] and cfg["runtime"]["opt_level"] == "O0":
        cfg["runtime"]["opt_level"] = "O1"
    return cfg, path
