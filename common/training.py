"""The mechanics a model's train.py calls: start a run, prepare the model, and the loop object.

A train.py reads::

    with training.start(NAME, args, cfg, config_path, MODEL_DIR) as rt:   # device, AMP, ranks, log
        ...datasets, model, optimizer (this model's)...
        loop = training.TrainLoop(model, optimizer, train_set, evaluate, rt, cfg, args)
        for iteration, images, labels in loop:        # resumed start .. max_iters
            set_lr(optimizer, lr_of(iteration))
            with rt.amp.autocast():
                outputs = loop.model(images)
            loop.step(*criterion(outputs, labels))     # backward, step, log, checkpoint, eval

:class:`TrainLoop` owns what happens between two steps (logging windows, checkpoints,
evaluation, graceful stop, the images/s summary); the model, loss and optimizer stay in
train.py. Checkpoints hold model, optimizer (with its parameter groups and their ``lr_mult``),
scaler, iteration, RNG and the resolved config; data order and augmentation are functions of
(seed, position), so a resumed run continues bit-exactly.
"""
import contextlib
import fcntl
import os
import random
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from common import distributed
from common.amp import MixedPrecision
from common.checkpoint import (CorruptCheckpoint, latest_checkpoint, load_model_weights,
                               remove_stale_temp_files, resumable_checkpoints, save_checkpoint)
from common.config import config_path_value
from common.datasets import InfiniteSampler, PadCollate, loader_worker_init, zero_padding
from common.device import memory_mb, select_device, synchronize
from common.device_caps import caps, check_channels_last, check_compile
from common.device_augment import DeviceAugment, list_collate
from common.errors import UserError, unwrap_worker_error
from common.host_memory import memory_policy_for
from common.logfmt import data_wait_share, format_run, format_summary, format_train
from common.pretrained import load_pretrained_backbone
from common.run_logger import RunLogger
from common.stop_signals import StopRequest, Stopped
from common.tensorboard_log import open_sink
from common.transforms import Normalize


@dataclass(frozen=True)
class Runtime:
    """What every run has, made once by :func:`start`."""
    name: str                  # the model's name: checkpoints record it, logs print it
    device: torch.device
    dist: distributed.DistInfo
    amp: MixedPrecision
    work_dir: str
    log: RunLogger             # log(message): this rank's file (+ stdout on rank 0)
    scalars: object = None     # TensorBoard sink (--tensorboard), or None


def seed_everything(seed, deterministic):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True


def work_dir_for(args, cfg, config_path, model_dir):
    """``--work-dir``, else the config's ``paths.ckpt_dir``, else work_dirs/<config name>."""
    return os.path.abspath(
        args.work_dir or config_path_value(cfg, "ckpt_dir", model_dir)
        or os.path.join("work_dirs", os.path.splitext(os.path.basename(config_path))[0]))


@contextlib.contextmanager
def start(name, args, cfg, config_path, model_dir):
    """Select the device, join the process group (checking every rank has the same config),
    seed, open the per-rank log and the AMP policy; yield the :class:`Runtime`. A collective
    that fails because a peer died becomes a one-line error naming this rank."""
    info = distributed.env_dist_info()
    device = select_device(args.device, info.local_rank, args.device_list)
    if cfg["runtime"]["compile"]:
        check_compile(device.type)
    if cfg["runtime"]["channels_last"]:
        check_channels_last(device.type)
    host_memory = memory_policy_for(device.type)
    work_dir = work_dir_for(args, cfg, config_path, model_dir)
    trains = not (args.eval_only or args.check_data or args.prepare_data
                  or getattr(args, "format_only", False))
    log_path = (args.log_file or os.path.join(work_dir, "train_rank{rank}.log")).replace(
        "{rank}", str(info.rank))
    log = RunLogger(log_path, echo=info.is_main)
    lock = WorkDirLock(work_dir) if trains and info.is_main else None
    scalars = None
    succeeded = False
    try:
        distributed.init_distributed(info, device.type)
        distributed.check_same_config(cfg, info)
        rt_cfg = cfg["runtime"]
        seed_everything(rt_cfg["seed"] + info.rank, rt_cfg["deterministic"])
        amp = MixedPrecision(device.type, rt_cfg["opt_level"], rt_cfg["loss_scale"],
                             rt_cfg["apex"])
        scalars = None if args.eval_only else open_sink(args.tensorboard, work_dir,
                                                        info.is_main)
        log(f"{name} | config {config_path} | device {device} | precision {amp.describe()} "
            f"| host memory: {host_memory}")
        log(format_run(name, info.world_size, cfg["data"]["batch_size"],
                       cfg["schedule"]["max_iters"]))
        yield Runtime(name, device, info, amp, work_dir, log, scalars)
        succeeded = True
    except RuntimeError as exc:
        if info.enabled and distributed.is_peer_failure(exc):
            raise distributed.peer_failure(exc, info.rank) from None
        raise
    finally:
        if scalars is not None:
            scalars.close()
        distributed.shutdown()
        log.close(succeeded)
        if lock is not None:
            lock.release()


class WorkDirLock:
    """``<work_dir>/.lock`` held (exclusive flock) by a training run, so that a second run on
    the same work dir stops at once, naming the first, instead of writing over its checkpoints
    and log. The file names the holder and is removed on release (a work dir holds no trace
    of a run that was refused); the lock itself ends with the process, however it ends."""

    def __init__(self, work_dir):
        self.path = os.path.join(work_dir, ".lock")
        try:
            os.makedirs(work_dir, exist_ok=True)
            while True:
                self._file = open(self.path, "a+")
                self._acquire(work_dir)
                if self._is_current():
                    break
                self._file.close()  # the holder removed this file while we waited: retry
        except OSError as exc:
            raise UserError(f"cannot use work dir {work_dir} ({exc.strerror}); pass a writable "
                            "--work-dir") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
        self._file.flush()

    def _acquire(self, work_dir):
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise UserError(f"work dir {work_dir} is in use by a running training ({holder}); "
                            "wait for it to finish or pass another --work-dir") from None

    def _is_current(self):
        try:
            return os.stat(self.path).st_ino == os.fstat(self._file.fileno()).st_ino
        except FileNotFoundError:
            return False

    def release(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass
        self._file.close()


def sgd(params, optim, amp):
    """SGD with the recipe's ``optim`` lr, momentum and weight decay; ``params`` may be
    parameter groups (each may carry an ``lr_mult`` that ``set_lr`` applies). Fused (one
    kernel per step; the same update up to float rounding, 2.5x faster than the per-parameter
    loop on ICNet's 48M parameters on CPU) where the device has the kernel and apex does not
    own the optimizer (``amp``: the run's :class:`MixedPrecision`)."""
    fused = caps(amp.device_type).fused_sgd and amp.apex is None
    return torch.optim.SGD(params, lr=optim["lr"], momentum=optim["momentum"],
                           weight_decay=optim["weight_decay"], fused=fused or None)


def load_pretrained(backbone, path, rt):
    """``--pretrained``: ImageNet ResNet weights into ``backbone``; the report goes to the log."""
    rt.log(load_pretrained_backbone(backbone, path).summary())


def unwrap(model):
    """The network inside DDP and/or torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def to_sync_bn(model, rt):
    """``runtime.sync_bn``: BatchNorm -> SyncBatchNorm on nccl/hccl; elsewhere say why not."""
    if not rt.dist.enabled:
        rt.log("--sync_bn: a single process has nothing to synchronise; BatchNorm is kept")
        return model
    if rt.device.type == "cpu":
        rt.log("--sync_bn: the gloo backend (CPU) has no SyncBatchNorm; each process keeps its "
               "own BatchNorm statistics")
        return model
    rt.log("--sync_bn: BatchNorm layers converted to SyncBatchNorm")
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def restore(model, optimizer, rt, path):
    """Resume: weights, optimizer, scaler, RNG; returns the iteration to continue from. An
    mmengine Runner checkpoint (mmseg 1.x) gives its weights, its iteration and, when it fits
    this optimizer's parameter groups, its optimizer state."""
    amp, log = rt.amp, rt.log
    ckpt = load_model_weights(model, path, rt.name)
    missing = [k for k in ("optimizer", "meta") if k not in ckpt]
    if missing:
        raise UserError(f"{path} holds weights only (no {', '.join(missing)}), so it cannot be "
                        "resumed; pass it as --load-from instead")
    if "openmmlab_dropped" in ckpt:  # mmseg 1.x training: its optimizer may not fit ours
        try:
            optimizer.load_state_dict(ckpt["optimizer"])
        except (ValueError, KeyError) as exc:
            log(f"{path}: its optimizer state does not fit this optimizer ({exc}); the "
                "optimizer starts fresh")
        return int(ckpt["meta"]["iteration"])
    optimizer.load_state_dict(ckpt["optimizer"])
    amp.load_state_dict(ckpt.get("scaler", {}))
    restore_rng(ckpt.get("rng", {}), rt)
    return int(ckpt["meta"]["iteration"])


def rng_state(rt):
    """This rank's generator states: torch's and, on an accelerator, the device's."""
    state = {"torch": torch.get_rng_state()}
    if rt.device.type != "cpu":
        state[rt.device.type] = getattr(torch, rt.device.type).get_rng_state(rt.device)
    return state


def restore_rng(rng, rt):
    """Each rank takes back its own states (``rng[kind][rank]``); a rank the checkpoint did
    not have (more processes than before) keeps its fresh seed."""
    for kind, states in rng.items():
        if not isinstance(states, list):  # one state for every rank (older checkpoints)
            states = [states] * rt.dist.world_size
        if rt.dist.rank >= len(states):
            continue
        if kind == "torch":
            torch.set_rng_state(states[rt.dist.rank])
        elif kind == rt.device.type:
            getattr(torch, kind).set_rng_state(states[rt.dist.rank], rt.device)


def resume(model, optimizer, rt, resume_from=None):
    """The iteration to start from: ``resume_from``, else the work dir's newest checkpoint
    that loads, falling back past corrupted ones (each named in the log); 0 for a new run."""
    if resume_from:
        start_iter = restore(model, optimizer, rt, resume_from)
        rt.log(f"Resumed from {resume_from} at iteration {start_iter}")
        return start_iter
    for candidate in resumable_checkpoints(rt.work_dir):
        try:
            start_iter = restore(model, optimizer, rt, candidate)
        except CorruptCheckpoint as exc:
            rt.log(f"Skipping {candidate}: {exc}; trying the previous checkpoint")
            continue
        rt.log(f"Resumed from {candidate} at iteration {start_iter}")
        return start_iter
    return 0


def iters_per_epoch(dataset, cfg, rt):
    """Iterations that draw every training image once (the seeds' epochs)."""
    return max(len(dataset) // (cfg["data"]["batch_size"] * rt.dist.world_size), 1)


def agree_on_start(start_iter, rt):
    """Every rank must resume from the same iteration. Only global rank 0 writes checkpoints,
    so nodes without a shared work dir would resume differently (and hang at the first
    collective): stop at once, saying so."""
    if not rt.dist.enabled:
        return
    starts = [None] * rt.dist.world_size
    torch.distributed.all_gather_object(starts, start_iter)
    if len(set(starts)) > 1:
        found = ", ".join(f"rank {rank}: {start}" for rank, start in enumerate(starts))
        raise UserError(f"ranks resume from different iterations ({found}); only rank 0 "
                        "writes checkpoints, so every node needs the same work dir (a shared "
                        "filesystem) or a copy of rank 0's latest checkpoint (--resume-from "
                        "on every node)")


def own_generator(seed):
    """DataLoaders draw their base seed from this, not from the global RNG, so building one
    (at start, at resume, for each evaluation) never shifts the training's dropout stream."""
    return torch.Generator().manual_seed(seed)


def next_batch(loader_iter):
    try:
        return next(loader_iter)
    except UserError as exc:  # re-raised from a worker with its traceback folded in
        raise unwrap_worker_error(exc) from None


def device_batch(batch, device, normalize, augment=None, channels_last=False):
    """A loader batch -> (normalised images, labels) on ``device``. With ``augment``
    (:class:`DeviceAugment`) the batch holds decoded samples and their seeds, transformed
    here; otherwise padded images, labels and each image's valid (h, w)."""
    if augment is None:
        images, labels, valid = batch
    else:
        images, labels, seeds = batch
        images, labels, valid = augment([i.to(device, non_blocking=True) for i in images],
                                        [l.to(device, non_blocking=True) for l in labels],
                                        seeds)
    images = zero_padding(normalize(images.to(device, non_blocking=True)), valid)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels.to(device, non_blocking=True).long()  # uint8 on the way


def build_train_loader(dataset, cfg, rt, start_iter):
    data = cfg["data"]
    sampler = InfiniteSampler(len(dataset), data["batch_size"], rt.dist.rank,
                              rt.dist.world_size, cfg["runtime"]["seed"], start_iter)
    workers = data["num_workers"]
    collate = (list_collate if data["device_augment"]
               else PadCollate(data["crop_size"], data["ignore_index"]))
    return torch.utils.data.DataLoader(
        dataset, batch_size=data["batch_size"], sampler=sampler, num_workers=workers,
        collate_fn=collate, drop_last=True, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
        generator=own_generator(cfg["runtime"]["seed"]), worker_init_fn=loader_worker_init,
        **pinning(rt.device))


def pinning(device):
    """DataLoader arguments for page-locked batches where the device gains from them. The
    device is named: torch 2.5/2.6 pin only for CUDA unless ``pin_memory_device`` says which."""
    if not caps(device.type).pin_memory:
        return {"pin_memory": False}
    return {"pin_memory": True, "pin_memory_device": device.type}


def checkpoint_state(model, optimizer, rt, cfg, iteration, rank_rngs):
    """What a checkpoint holds; ``rank_rngs``: every rank's :func:`rng_state`, by rank."""
    rng = {kind: [states[kind] for states in rank_rngs] for kind in rank_rngs[0]}
    return {"meta": {"model": rt.name, "iteration": iteration, "config": cfg,
                     "world_size": rt.dist.world_size},
            "state_dict": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": rt.amp.state_dict(),
            "rng": rng}


class TrainLoop:
    """Iterations ``start .. max_iters`` of one run, for train.py's ``for`` loop.

    Construction loads ``--load-from`` weights, moves the model to the device (NHWC with
    ``runtime.channels_last``), lets apex wrap model and optimizer, resumes (``--resume-from``
    or the work dir's newest loadable checkpoint), converts to SyncBatchNorm, wraps in DDP and
    ``torch.compile`` as the config says. ``loop.model`` is the model to call.

    Iterating yields ``(iteration, images, labels)`` on the device; :meth:`step` takes the
    loss (and its per-head terms for the log) and does the backward and optimizer step, the
    non-finite check, the log line every ``log_interval``, the checkpoint every
    ``checkpoint_interval``, the evaluation (``evaluate(model, iteration)``) every
    ``eval_interval`` and the graceful stop on SIGTERM/SIGINT.
    """

    def __init__(self, model, optimizer, train_set, evaluate, rt, cfg, args):
        self.cfg, self.rt, self.optimizer, self.evaluate = cfg, rt, optimizer, evaluate
        self.train_set = train_set
        runtime = cfg["runtime"]
        synced = runtime["sync_bn"] and rt.dist.enabled and rt.device.type != "cpu"
        if cfg["data"]["batch_size"] < 2 and not synced:
            raise UserError("a batch of 1 image per device cannot train these networks: their "
                            "BatchNorm layers after global pooling need 2 or more values per "
                            "channel; use --batch_size 2 or more (or --sync_bn on several "
                            "GPUs/NPUs)")
        if args.load_from:
            load_model_weights(model, args.load_from, rt.name)
            rt.log(f"Loaded weights from {args.load_from}")
        model.to(rt.device)
        if runtime["channels_last"]:
            if caps(rt.device.type).channels_last_weights:
                model.to(memory_format=torch.channels_last)
        if runtime["sync_bn"]:  # before apex wraps the model, as apex documents
            model = to_sync_bn(model, rt)
        model, self.optimizer = rt.amp.prepare(model, optimizer)
        if rt.dist.is_main:
            remove_stale_temp_files(rt.work_dir)
        self.start = resume(model, self.optimizer, rt, args.resume_from)
        agree_on_start(self.start, rt)
        if rt.dist.enabled:
            model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[rt.device.index] if rt.device.type != "cpu" else None)
        if runtime["compile"]:
            model = torch.compile(model)
        self.model = model
        self.validate = evaluate is not None
        self.profile = args.prof
        self.max_iters = cfg["schedule"]["max_iters"]
        self.global_batch = cfg["data"]["batch_size"] * rt.dist.world_size
        self.metrics = None
        self._stop = StopRequest()
        self._told_loader_bound = False
        rt.log(f"Training {len(train_set)} images, {cfg['data']['batch_size']} per device x "
               f"{rt.dist.world_size}, iterations {self.start}..{self.max_iters}, "
               f"work dir {rt.work_dir}")

    def __iter__(self):
        cfg, rt = self.cfg, self.rt
        if self.start >= self.max_iters:
            rt.log(f"Run already complete at iteration {self.start} (max_iters "
                   f"{self.max_iters}): nothing to train")
            if self.validate:
                self.metrics = self.evaluate(self.model, self.start)
            return
        rt.log.commit()  # the run has started: its log goes to the file from here on
        normalize = Normalize()
        augment = DeviceAugment(cfg["data"]) if cfg["data"]["device_augment"] else None
        loader_iter = iter(build_train_loader(self.train_set, cfg, rt, self.start))
        self.model.train()
        self._window = new_window()
        self._perf_start = self.start + cfg["runtime"]["perf_warmup_iters"]
        self._perf_t0, self._paused = None, 0.0  # checkpoints and evaluations are not training
        profiler = start_profiler(rt.device) if self.profile else None
        progress = (tqdm(total=self.max_iters, initial=self.start, desc="train",
                         file=sys.stderr) if sys.stderr.isatty() and rt.dist.is_main else None)
        self._stop.install()
        try:
            self._t_end = time.perf_counter()
            for iteration in range(self.start, self.max_iters):
                if iteration == self._perf_start:
                    synchronize(rt.device)
                    self._perf_t0 = time.perf_counter()
                batch = next_batch(loader_iter)
                self._t_data = time.perf_counter()
                self._iteration = iteration
                self._stepped = False
                yield (iteration, *device_batch(batch, rt.device, normalize, augment,
                                                cfg["runtime"]["channels_last"]))
                if not self._stepped:
                    raise RuntimeError("train.py must call loop.step(loss, terms) once per "
                                       "iteration")
                if profiler is not None:
                    profiler.step()
                if progress is not None:
                    progress.update(1)
            synchronize(rt.device)
        finally:
            self._stop.uninstall()
            if progress is not None:
                progress.close()
        if profiler is not None:
            stop_profiler(profiler, rt)
        self._log_summary()

    def step(self, loss, terms=None):
        """Backward + optimizer step for the current iteration, then the periodic work."""
        rt, cfg = self.rt, self.cfg
        runtime = cfg["runtime"]
        self._stepped = True
        done = self._iteration + 1
        rt.amp.zero_grad(self.optimizer)
        window = self._window
        stepped = rt.amp.backward_and_step(loss, self.optimizer)
        if isinstance(stepped, torch.Tensor):  # a dynamic scaler decided on the device
            kept = stepped.to(torch.float32)
            window["scaler_skips"] = window["scaler_skips"] + (1 - kept)
            for key, value in {"loss": loss.detach(), **(terms or {})}.items():
                window["loss_sum"][key] = window["loss_sum"].get(key, 0.0) + value * kept
        elif not stepped:
            self._non_finite(done, loss)
            window["skipped"] += 1
        else:
            for key, value in {"loss": loss.detach(), **(terms or {})}.items():
                window["loss_sum"][key] = window["loss_sum"].get(key, 0.0) + value
        at_log = done % runtime["log_interval"] == 0 or done == self.max_iters
        if at_log:
            synchronize(rt.device)
        now = time.perf_counter()
        window["n"] += 1
        window["time"] += now - self._t_end
        window["data"] += self._t_data - self._t_end
        if at_log:
            self._log_window(done)
        pause_start = time.perf_counter()
        saved = done % runtime["checkpoint_interval"] == 0 or done == self.max_iters
        if saved:
            self.save(done)
        if self.validate and (done % runtime["eval_interval"] == 0 or done == self.max_iters):
            self.metrics = self.evaluate(self.model, done)
            self.model.train()
        if done < self.max_iters and self._stop_agreed():
            if not saved:
                self.save(done)
            rt.log(f"Stopped by {self._stop.describe()} after iteration {done}: the checkpoint "
                   "is saved; run the same command again to resume from it")
            raise Stopped(self._stop.signum)
        self._t_end = time.perf_counter()
        if self._perf_t0 is not None:
            self._paused += self._t_end - pause_start

    def save(self, done):
        """Rank 0 writes the checkpoint (replicas are identical); the others wait for it."""
        rt = self.rt
        rank_rngs = distributed.gather_objects(rng_state(rt))
        if rt.dist.is_main:
            path = save_checkpoint(rt.work_dir, done,
                                   checkpoint_state(self.model, self.optimizer, rt, self.cfg,
                                                    done, rank_rngs),
                                   self.cfg["runtime"]["max_keep_ckpts"] or None)
            rt.log(f"Saved checkpoint {path}")
        distributed.barrier()

    def _log_window(self, done):
        rt, window = self.rt, self._window
        n = window["n"]
        scaler_skips = int(float(window["scaler_skips"]))
        if scaler_skips:
            rt.log(f"iterations {done - n + 1}..{done}: the dynamic loss scaler skipped "
                   f"{scaler_skips} step(s) with non-finite gradients and lowered its scale")
        skipped = window["skipped"] + scaler_skips
        losses = ({k: float(v) / (n - skipped) for k, v in window["loss_sum"].items()}
                  if skipped < n else {})
        losses = losses or {"loss": float("nan")}  # every step of the window was skipped
        losses = distributed.reduce_mean_scalars(losses, rt.device)
        iter_time = window["time"] / n
        lr = self.optimizer.param_groups[0]["lr"]
        rt.log(format_train(done, self.max_iters, lr, losses, iter_time, window["data"] / n,
                            self.global_batch / iter_time, memory_mb(rt.device)))
        self._warn_if_loader_bound(done - n + 1, done, window)
        if rt.scalars is not None:
            rt.scalars.add({**{f"train/{k}": v for k, v in losses.items()}, "train/lr": lr,
                            "train/images_per_s": self.global_batch / iter_time}, done)
        self._window = new_window()

    def _warn_if_loader_bound(self, first, last, window):
        """Said once per run: the step waited for data for a large share of a window (the
        first window is left out: it includes the workers' start)."""
        share = data_wait_share(window["data"], window["time"])
        if self._told_loader_bound or first <= self.start + 1 or share < LOADER_BOUND_SHARE:
            return
        self._told_loader_bound = True
        workers = self.cfg["data"]["num_workers"]
        self.rt.log(f"note: iterations {first}..{last} waited for data {100 * share:.0f}% of "
                    f"the time: this run is loader-bound. Decode the dataset once "
                    f"(train.py --prepare-data), raise --workers (now {workers} per device), "
                    "or augment on the device (--device-augment); README, Devices")

    def _log_summary(self):
        if self._perf_t0 is None or self.max_iters <= self._perf_start:
            return
        measured = self.max_iters - self._perf_start
        elapsed = time.perf_counter() - self._perf_t0 - self._paused
        self.rt.log(format_summary(measured, measured * self.global_batch / elapsed,
                                   1000 * elapsed / measured, elapsed))

    def _stop_agreed(self):
        """Whether to stop now; with several processes, when any rank got a stop signal (one
        small all-reduce per iteration over a host-side gloo group: no device sync), so all
        stop after the same iteration."""
        if not self.rt.dist.enabled:
            return self._stop.requested
        flag = torch.tensor([self._stop.signum or 0], dtype=torch.int32)  # host memory
        distributed.all_reduce_max(flag, distributed.control_group())
        if flag.item() and not self._stop.requested:
            self._stop.signum = int(flag.item())
        return bool(flag.item())

    def _non_finite(self, done, loss):
        """The step was not taken: non-finite gradients. A dynamic loss scaler skips such steps
        by design; otherwise ``runtime.nan_policy`` says skip (and go on) or stop (keeping the
        checkpoints: nothing of this state is saved)."""
        rt = self.rt
        where = f"iteration {done}: non-finite gradients (loss {float(loss.detach())})"
        if rt.amp.dynamic_scaling:  # apex's dynamic scaler
            rt.log(f"{where}; the dynamic loss scaler skipped the step and lowered its scale")
        elif self.cfg["runtime"]["nan_policy"] == "skip":
            rt.log(f"{where}; step skipped (--nan-policy skip)")
        else:
            last = latest_checkpoint(rt.work_dir)
            raise UserError(f"{where}; stopped (--nan-policy stop) keeping the last good "
                            f"checkpoint {last or '(none yet)'}; lower --lr, check the data, "
                            "or pass --nan-policy skip")


LOADER_BOUND_SHARE = 0.25  # of a window's time spent waiting for the next batch


def new_window():
    """Sums over the iterations between two log lines."""
    return {"loss_sum": {}, "n": 0, "skipped": 0, "scaler_skips": 0.0, "time": 0.0,
            "data": 0.0}


def start_profiler(device):
    """``--prof`` / ``--prof_test``: record 5 steps after 2 of warm-up into a Chrome trace."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    prof = torch.profiler.profile(activities=activities,
                                  schedule=torch.profiler.schedule(wait=0, warmup=2, active=5,
                                                                   repeat=1))
    prof.start()
    return prof


def stop_profiler(prof, rt, name="profile_trace.json"):
    prof.stop()
    if rt.dist.is_main:
        path = os.path.join(rt.work_dir, name)
        prof.export_chrome_trace(path)
        rt.log(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        rt.log(f"Profiler trace written to {path}")
