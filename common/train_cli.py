"""The shared ``train.py``: flags, config resolution, set-up, then the engine.

Each model directory's train.py is three lines: it hands :func:`main` a :class:`ModelSpec`.
Flags (the seeds' set, DESIGN.md) override the YAML config; a work dir that already holds a
checkpoint resumes from it automatically.
"""
import argparse
import os
import random

import numpy as np
import torch

from common import distributed
from common.amp import MixedPrecision
from common.checkpoint import (CorruptCheckpoint, latest_checkpoint, load_model_weights,
                               remove_stale_temp_files, resumable_checkpoints)
from common.config import config_path_value, load_config, parse_cfg_option
from common.data import build_train_set, build_val_set, class_names, palette, synthetic_root
from common.device import DEVICE_CHOICES, select_device
from common.data_check import check_dataset
from common.engine import TrainState, evaluate, train
from common.inference import InferenceMode
from common.errors import ArgParser, UserError
from common.logfmt import format_run
from common.pretrained import load_pretrained_backbone
from common.run_logger import RunLogger
from common.stop_signals import StopRequest
from common.tensorboard_log import open_sink


def build_parser(spec):
    p = ArgParser(description=f"Train / evaluate {spec.name}.")
    p.add_argument("--data_path", "--data-path", dest="data_path", default=None,
                   help="dataset root (default: the synthetic dataset, generated once)")
    p.add_argument("--config", default=None,
                   help=f"YAML recipe (default configs/{spec.default_config}, or "
                        f"configs/{spec.smoke_config} without --data_path)")
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
                   help="'dynamic' or a number")
    p.add_argument("--apex", action="store_true", help="use apex amp (must be installed)")
    p.add_argument("--sync_bn", "--sync-bn", dest="sync_bn", action="store_true",
                   help="SyncBatchNorm across processes where the backend supports it")
    p.add_argument("--prof", action="store_true", help="profile 5 iterations (Chrome trace)")
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
                   help="per-rank log path; '{rank}' is replaced (default <work-dir>/train_rank{rank}.log)")
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
    p.add_argument("--tensorboard", action="store_true",
                   help="also log scalars to <work-dir>/tensorboard (needs tensorboard)")
    p.add_argument("--channels-last", "--channels_last", dest="channels_last",
                   action="store_true", help="NHWC memory format for training (fast path)")
    p.add_argument("--device-augment", "--device_augment", dest="device_augment",
                   action="store_true", help="train transforms on the device; workers decode")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training model (first iterations compile)")
    p.add_argument("--keep", type=int, default=None, metavar="N",
                   help="keep the newest N checkpoints (never the one 'latest' names); 0 = all")
    p.add_argument("--nan-policy", "--nan_policy", dest="nan_policy", default="stop",
                   choices=("stop", "skip"),
                   help="non-finite gradients without AMP dynamic scaling: stop keeping the "
                        "last good checkpoint (default) or skip the step")
    p.add_argument("--check-data", "--check_data", dest="check_data", action="store_true",
                   help="scan the train and val sets, report every problem, and exit")
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
               "keep": "runtime.max_keep_ckpts", "eval_mode": "eval.mode", "slide_crop": "eval.crop_size",
               "slide_stride": "eval.stride"}


def resolve_config(args, spec):
    default = spec.default_config if args.data_path else spec.smoke_config
    path = args.config or os.path.join(spec.model_dir, "configs", default)
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
            overrides.append((key, value))
    if args.do_eval and args.no_validate:
        raise UserError("--do_eval contradicts --no-validate; drop one of them")
    if args.tta:
        overrides.append(("eval.tta", True))
    if args.device_augment:
        overrides.append(("data.device_augment", True))
    if args.amp:
        if args.opt_level == "O0":
            raise UserError("--amp contradicts --opt-level O0; drop one of them")
        overrides.append(("runtime.amp", True))
    cfg = load_config(path, overrides, spec.build_model)
    if cfg["runtime"]["amp"] and cfg["runtime"]["opt_level"] == "O0":
        cfg["runtime"]["opt_level"] = "O1"
    return cfg, path


def seed_everything(seed, deterministic):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def resolve_data_root(args, cfg, log, model_dir):
    if args.data_path:
        return os.path.abspath(args.data_path)
    configured = config_path_value(cfg, "cityscapes_root", model_dir)
    if configured:
        return configured
    root = synthetic_root(cfg)
    log(f"No --data_path: using the synthetic {cfg['data']['dataset']} dataset at {root}")
    return root


def to_sync_bn(model, device, info, log):
    """``--sync_bn``: BatchNorm -> SyncBatchNorm on nccl/hccl; elsewhere say why not."""
    if not info.enabled:
        log("--sync_bn: a single process has nothing to synchronise; BatchNorm is kept")
        return model
    if device.type == "cpu":
        log("--sync_bn: the gloo backend (CPU) has no SyncBatchNorm; each process keeps its "
            "own BatchNorm statistics")
        return model
    log("--sync_bn: BatchNorm layers converted to SyncBatchNorm")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def restore(model, optimizer, amp, path, spec):
    """Resume: weights, optimizer, scaler, RNG; returns the iteration to continue from."""
    ckpt = load_model_weights(model, path, spec.name)
    missing = [k for k in ("optimizer", "meta") if k not in ckpt]
    if missing:
        raise UserError(f"{path} holds weights only (no {', '.join(missing)}), so it cannot be "
                        "resumed; pass it as --load-from instead")
    optimizer.load_state_dict(ckpt["optimizer"])
    amp.load_state_dict(ckpt.get("scaler", {}))
    rng = ckpt.get("rng", {})
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return int(ckpt["meta"]["iteration"])


def resume(args, model, optimizer, amp, spec, work_dir, log):
    """The iteration to start from: ``--resume-from``, else the work dir's newest checkpoint
    that loads, falling back past corrupted ones (each named in the log); 0 for a new run."""
    if args.resume_from:
        start = restore(model, optimizer, amp, args.resume_from, spec)
        log(f"Resumed from {args.resume_from} at iteration {start}")
        return start
    for candidate in resumable_checkpoints(work_dir):
        try:
            start = restore(model, optimizer, amp, candidate, spec)
        except CorruptCheckpoint as exc:
            log(f"Skipping {candidate}: {exc}; trying the previous checkpoint")
            continue
        log(f"Resumed from {candidate} at iteration {start}")
        return start
    return 0


def main(argv, spec):
    args = build_parser(spec).parse_args(argv)
    cfg, config_path = resolve_config(args, spec)
    info = distributed.env_dist_info()
    device = select_device(args.device, info.local_rank, args.device_list)
    work_dir = os.path.abspath(
        args.work_dir or config_path_value(cfg, "ckpt_dir", spec.model_dir)
        or os.path.join("work_dirs", os.path.splitext(os.path.basename(config_path))[0]))
    log_path = (args.log_file or os.path.join(work_dir, "train_rank{rank}.log")).replace(
        "{rank}", str(info.rank))
    log = RunLogger(log_path, echo=info.is_main)
    try:
        distributed.init_distributed(info, device.type)
        distributed.check_same_config(cfg, info)
        return run(args, cfg, config_path, spec, info, device, work_dir, log)
    except RuntimeError as exc:
        if info.enabled and distributed.is_peer_failure(exc):
            raise distributed.peer_failure(exc, info.rank) from None
        raise
    finally:
        distributed.shutdown()
        log.close()


def run(args, cfg, config_path, spec, info, device, work_dir, log):
    rt = cfg["runtime"]
    if cfg["loss"]["sampler"] is not None and spec.pixel_sampler is None:
        raise UserError(f"config loss.sampler is set but {spec.name} has no pixel sampler; "
                        "remove loss.sampler")
    scalars = None if args.eval_only else open_sink(args.tensorboard, work_dir, info.is_main)
    seed_everything(rt["seed"] + info.rank, rt["deterministic"])
    amp = MixedPrecision(device.type, rt["opt_level"], rt["loss_scale"], args.apex)
    log(f"{spec.name} | config {config_path} | device {device} | precision {amp.describe()}")
    log(format_run(spec.name, info.world_size, cfg["data"]["batch_size"],
                   cfg["schedule"]["max_iters"]))
    data_root = resolve_data_root(args, cfg, log, spec.model_dir)
    data = cfg["data"]
    if args.check_data:
        splits = [data["train_split"], data["val_split"]]
        checked = check_dataset(cfg, data_root, splits, log, max(data["num_workers"], 1),
                                use_cache=False, shown=None)
        log(f"--check-data: {sum(map(len, checked.values()))} image/label pairs of "
            f"{' and '.join(splits)} in {data_root} checked, no problems")
        return None
    splits = ([] if args.eval_only else [data["train_split"]]) + (
        [data["val_split"]] if args.eval_only or not args.no_validate else [])
    checked = check_dataset(cfg, data_root, splits, log, max(data["num_workers"], 1))
    val_set = (None if args.no_validate and not args.eval_only
               else build_val_set(cfg, checked[data["val_split"]]))
    model = spec.build_model(**cfg["model"])
    state = TrainState(cfg=cfg, model_name=spec.name, device=device, dist=info, amp=amp,
                       work_dir=work_dir, log=log, class_names=class_names(cfg),
                       validate=not args.no_validate, profile=args.prof,
                       pixel_sampler=spec.pixel_sampler,
                       inference=InferenceMode.from_config(cfg), palette=palette(cfg),
                       show_dir=args.show_dir and os.path.abspath(args.show_dir),
                       scalars=scalars)
    if args.eval_only:
        ckpt = (args.checkpoint or config_path_value(cfg, "ckpt_path", spec.model_dir)
                or latest_checkpoint(work_dir))
        if ckpt is None:
            raise UserError(f"--eval-only needs --checkpoint (no checkpoint in {work_dir})")
        meta = load_model_weights(model, ckpt, spec.name).get("meta") or {}
        log(f"Evaluating {ckpt} ({state.inference.name} inference)")
        state.results_dir = os.path.dirname(os.path.abspath(ckpt))  # next to the checkpoint
        model.to(device)
        return evaluate(model, val_set, state, iteration=meta.get("iteration", 0))
    train_set = build_train_set(cfg, checked[data["train_split"]])
    if args.pretrained:
        target = spec.pretrained_target(model) if spec.pretrained_target else model
        log(load_pretrained_backbone(target, args.pretrained).summary())
    if args.load_from:
        load_model_weights(model, args.load_from, spec.name)
        log(f"Loaded weights from {args.load_from}")
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
        state.channels_last = True
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["optim"]["lr"],
                                momentum=cfg["optim"]["momentum"],
                                weight_decay=cfg["optim"]["weight_decay"])
    model, optimizer = amp.prepare(model, optimizer)
    if info.is_main:
        remove_stale_temp_files(work_dir)
    state.start_iter = resume(args, model, optimizer, amp, spec, work_dir, log)
    if args.sync_bn:
        model = to_sync_bn(model, device, info, log)
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type != "cpu" else None)
    if args.compile:
        model = torch.compile(model)
    log(f"Training {len(train_set)} images, {cfg['data']['batch_size']} per device x "
        f"{info.world_size}, iterations {state.start_iter}..{cfg['schedule']['max_iters']}, "
        f"work dir {work_dir}")
    state.nan_policy = args.nan_policy
    state.stop = StopRequest().install()
    try:
        return train(model, optimizer, train_set, val_set, state)
    finally:
        state.stop.uninstall()
        if state.scalars is not None:
            state.scalars.close()
