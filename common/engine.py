"""The iteration-based training loop and the evaluation loop, shared by every model.

Training (read top to bottom in :func:`train`): draw a batch from the infinite seeded sampler,
normalise on the device, forward under autocast, sum the weighted losses of the main and
auxiliary heads, backward + SGD step through :class:`common.amp.MixedPrecision`, set the LR for
the next iteration from the closed-form schedule, log every ``log_interval``, evaluate every
``eval_interval`` and checkpoint every ``checkpoint_interval`` (and at the end).

Evaluation: whole, slide or TTA inference (common.inference), logits resized to the label
size, one confusion matrix over the split; with several processes each rank takes images
``rank::world_size`` (every image exactly once) and the matrices are summed.
"""
import csv
import json
import os
import sys
import time
from dataclasses import dataclass

import cv2
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import distributed
from common.checkpoint import latest_checkpoint, save_checkpoint
from common.datasets import InfiniteSampler, PadCollate, zero_padding
from common.device import memory_mb, synchronize
from common.device_augment import DeviceAugment, list_collate
from common.errors import UserError, unwrap_worker_error
from common.fuse import fast_inference_model
from common.inference import WHOLE, predict_logits
from common.layers import resize
from common.logfmt import format_summary, format_train, format_val
from common.lr_schedule import schedule_from_config, set_lr
from common.metrics import compute_metrics, confusion_matrix, per_class_table
from common.stop_signals import Stopped, ignore_stop_signals
from common.transforms import Normalize
from common.visualize import comparison_strip


def seg_losses(outputs, label, loss_cfg, ignore_index=255, pixel_sampler=None):
    """Weighted cross-entropy of every head, logits resized to the label size.

    Mean over all pixels, ignored ones counting zero: mmseg's CrossEntropyLoss default
    (``avg_non_ignore=False``). With ``loss.sampler`` set, each head's pixels are weighted by
    the model's ``pixel_sampler`` (e.g. OHEM) first. Returns (total, {"<head>.loss_ce": value}).
    """
    weights, sampler_opts = loss_cfg["weights"], loss_cfg.get("sampler")
    terms = {}
    total = 0.0
    for name, logits in outputs.items():
        weight = weights.get(name)
        if weight is None:
            raise UserError(f"config loss.weights has no weight for head {name!r}; heads are "
                            f"{', '.join(outputs)}")
        logits = resize(logits, label.shape[-2:]).float()
        pixel_loss = F.cross_entropy(logits, label, ignore_index=ignore_index, reduction="none")
        if sampler_opts is not None:
            pixel_loss = pixel_loss * pixel_sampler(logits, label, ignore_index, **sampler_opts)
        loss = pixel_loss.mean()
        terms[f"{name}.loss_ce"] = loss.detach()
        total = total + weight * loss
    return total, terms


@dataclass
class TrainState:
    """What a run needs besides the model: given to :func:`train` by train_cli."""
    cfg: dict
    model_name: str
    device: torch.device
    dist: distributed.DistInfo
    amp: object
    work_dir: str
    log: object
    class_names: tuple
    start_iter: int = 0
    validate: bool = True
    profile: bool = False
    pixel_sampler: object = None
    inference: object = WHOLE        # common.inference.InferenceMode
    palette: tuple = ()
    show_dir: str = None             # --show-dir: one picture per evaluated image
    results_dir: str = None          # eval JSON/CSV (default: the work dir)
    scalars: object = None           # TensorBoard sink (common.tensorboard_log), or None
    stop: object = None              # common.stop_signals.StopRequest, or None
    nan_policy: str = "stop"         # non-finite gradients without a dynamic scaler
    channels_last: bool = False      # --channels-last: NHWC activations

    def __post_init__(self):
        self.results_dir = self.results_dir or self.work_dir


def build_train_loader(dataset, cfg, state):
    data = cfg["data"]
    sampler = InfiniteSampler(len(dataset), data["batch_size"], state.dist.rank,
                              state.dist.world_size, cfg["runtime"]["seed"], state.start_iter)
    workers = data["num_workers"]
    collate = (list_collate if data["device_augment"]
               else PadCollate(data["crop_size"], data["ignore_index"]))
    return torch.utils.data.DataLoader(
        dataset, batch_size=data["batch_size"], sampler=sampler, num_workers=workers,
        collate_fn=collate, pin_memory=state.device.type == "cuda", drop_last=True,
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
        generator=own_generator(cfg["runtime"]["seed"]), worker_init_fn=ignore_stop_signals)


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
    return images, labels.to(device, non_blocking=True)


def own_generator(seed):
    """DataLoaders draw their base seed from this, not from the global RNG, so building one
    (at start, at resume, for each evaluation) never shifts the training's dropout stream."""
    return torch.Generator().manual_seed(seed)


def next_batch(loader_iter):
    try:
        return next(loader_iter)
    except UserError as exc:  # re-raised from a worker with its traceback folded in
        raise unwrap_worker_error(exc) from None


def checkpoint_state(model, optimizer, state, iteration):
    rng = {"torch": torch.get_rng_state()}
    if state.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(state.device)
    return {"meta": {"model": state.model_name, "iteration": iteration, "config": state.cfg,
                     "world_size": state.dist.world_size},
            "state_dict": unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": state.amp.state_dict(),
            "rng": rng}


def unwrap(model):
    """The network inside DDP and/or torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def train(model, optimizer, train_set, val_set, state):
    """Run iterations ``start_iter .. max_iters``; return the last evaluation metrics."""
    cfg = state.cfg
    rt, max_iters = cfg["runtime"], cfg["schedule"]["max_iters"]
    if state.start_iter >= max_iters:
        state.log(f"Run already complete at iteration {state.start_iter} (max_iters "
                  f"{max_iters}): nothing to train")
        return evaluate(model, val_set, state, state.start_iter) if state.validate else None
    lr_of = schedule_from_config(cfg)
    normalize = Normalize()
    augment = DeviceAugment(cfg["data"]) if cfg["data"]["device_augment"] else None
    global_batch = cfg["data"]["batch_size"] * state.dist.world_size
    loader_iter = iter(build_train_loader(train_set, cfg, state))
    log, metrics = state.log, None
    model.train()
    window = new_window()
    perf_start_iter = state.start_iter + rt["perf_warmup_iters"]
    perf_t0, paused = None, 0.0  # checkpoint writes and evaluations are not training time
    profiler = start_profiler(state) if state.profile else None
    progress = (tqdm(total=max_iters, initial=state.start_iter, desc="train", file=sys.stderr)
                if sys.stderr.isatty() and state.dist.is_main else None)
    t_end = time.perf_counter()
    for iteration in range(state.start_iter, max_iters):
        if iteration == perf_start_iter:
            synchronize(state.device)
            perf_t0 = time.perf_counter()
        batch = next_batch(loader_iter)
        t_data = time.perf_counter()
        images, labels = device_batch(batch, state.device, normalize, augment,
                                      state.channels_last)
        set_lr(optimizer, lr_of(iteration))
        with state.amp.autocast():
            outputs = model(images)
        loss, terms = seg_losses(outputs, labels, cfg["loss"], cfg["data"]["ignore_index"],
                                 state.pixel_sampler)
        optimizer.zero_grad(set_to_none=True)
        done = iteration + 1
        if not state.amp.backward_and_step(loss, optimizer):
            handle_non_finite(state, done, loss)
            window["skipped"] += 1
        else:
            for key, value in {"loss": loss.detach(), **terms}.items():
                window["loss_sum"][key] = window["loss_sum"].get(key, 0.0) + value
        if profiler is not None:
            profiler.step()
        if progress is not None:
            progress.update(1)
        if done % rt["log_interval"] == 0 or done == max_iters:
            synchronize(state.device)
        now = time.perf_counter()
        window["n"] += 1
        window["time"] += now - t_end
        window["data"] += t_data - t_end
        t_end = now
        if done % rt["log_interval"] == 0 or done == max_iters:
            n = window["n"]
            stepped = max(n - window["skipped"], 1)
            losses = ({k: float(v) / stepped for k, v in window["loss_sum"].items()}
                      or {"loss": float("nan")})  # every step of the window was skipped
            losses = distributed.reduce_mean_scalars(losses, state.device)
            iter_time = window["time"] / n
            lr = optimizer.param_groups[0]["lr"]
            log(format_train(done, max_iters, lr, losses, iter_time, window["data"] / n,
                             global_batch / iter_time, memory_mb(state.device)))
            if state.scalars is not None:
                state.scalars.add({**{f"train/{k}": v for k, v in losses.items()},
                                   "train/lr": lr, "train/images_per_s": global_batch / iter_time},
                                  done)
            window = new_window()
        pause_start = time.perf_counter()
        saved = done % rt["checkpoint_interval"] == 0 or done == max_iters
        if saved:
            save(model, optimizer, state, done)
        if state.validate and (done % rt["eval_interval"] == 0 or done == max_iters):
            metrics = evaluate(model, val_set, state, done)
            model.train()
        if done < max_iters and stop_agreed(state):
            if not saved:
                save(model, optimizer, state, done)
            log(f"Stopped by {state.stop.describe()} after iteration {done}: the checkpoint "
                "is saved; run the same command again to resume from it")
            raise Stopped(state.stop.signum)
        t_end = time.perf_counter()
        if perf_t0 is not None:
            paused += t_end - pause_start
    synchronize(state.device)
    if progress is not None:
        progress.close()
    if profiler is not None:
        stop_profiler(profiler, state)
    if perf_t0 is not None and max_iters > perf_start_iter:
        measured = max_iters - perf_start_iter
        elapsed = time.perf_counter() - perf_t0 - paused
        log(format_summary(measured, measured * global_batch / elapsed,
                           1000 * elapsed / measured, elapsed))
    return metrics


def new_window():
    """Sums over the iterations between two log lines."""
    return {"loss_sum": {}, "n": 0, "skipped": 0, "time": 0.0, "data": 0.0}


def save(model, optimizer, state, done):
    """Rank 0 writes the checkpoint (replicas are identical); the others wait for it."""
    if state.dist.is_main:
        path = save_checkpoint(state.work_dir, done,
                               checkpoint_state(model, optimizer, state, done),
                               state.cfg["runtime"]["max_keep_ckpts"] or None)
        state.log(f"Saved checkpoint {path}")
    distributed.barrier()


def stop_agreed(state):
    """Whether to stop now; with several processes, when any rank got a stop signal (one
    small all-reduce per iteration), so all stop after the same iteration."""
    if state.stop is None:
        return False
    if not state.dist.enabled:
        return state.stop.requested
    flag = torch.tensor([state.stop.signum or 0], device=state.device)
    distributed.all_reduce_max(flag)
    if flag.item() and not state.stop.requested:
        state.stop.signum = int(flag.item())
    return bool(flag.item())


def handle_non_finite(state, done, loss):
    """The step was not taken: non-finite gradients. A dynamic loss scaler skips such steps by
    design; otherwise ``--nan-policy`` says skip (and go on) or stop (keeping the checkpoints:
    nothing of this state is saved)."""
    value = float(loss.detach())
    where = f"iteration {done}: non-finite gradients (loss {value})"
    if state.amp.dynamic_scaling:
        state.log(f"{where}; the dynamic loss scaler skipped the step and lowered its scale")
    elif state.nan_policy == "skip":
        state.log(f"{where}; step skipped (--nan-policy skip)")
    else:
        last = latest_checkpoint(state.work_dir)
        raise UserError(f"{where}; stopped (--nan-policy stop) keeping the last good checkpoint "
                        f"{last or '(none yet)'}; lower --lr, check the data, or pass "
                        "--nan-policy skip")


def first_item(batch):
    return batch[0]


@torch.no_grad()
def evaluate(model, dataset, state, iteration=0):
    """Confusion-matrix evaluation of ``dataset`` in ``state.inference`` mode; logs the summary
    and the per-class table, writes them as JSON/CSV to ``state.results_dir`` (and pictures to
    ``state.show_dir``), returns the metrics. Rank r of N takes images r, r+N, ...: every image
    counted once; the matrices are summed."""
    cfg, mode = state.cfg, state.inference
    num_classes, ignore = cfg["data"]["num_classes"], cfg["data"]["ignore_index"]
    net = unwrap(model)
    net.eval()
    if cfg["eval"]["fast"]:
        net = fast_inference_model(net)
    indices = range(state.dist.rank, len(dataset), state.dist.world_size)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices), batch_size=1,
        num_workers=min(cfg["data"]["num_workers"], 2), collate_fn=first_item,
        generator=own_generator(cfg["runtime"]["seed"]), worker_init_fn=ignore_stop_signals)
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=state.device)
    iterator = loader
    if state.dist.is_main:
        iterator = tqdm(loader, desc=f"eval ({mode.name})", file=sys.stderr, mininterval=2.0)
    it = iter(iterator)
    synchronize(state.device)
    t0 = time.perf_counter()
    for _ in range(len(indices)):
        image, label, index = next_batch(it)
        on_device = ([i.to(state.device) for i in image] if isinstance(image, list)
                     else image.to(state.device))
        pred = predict_logits(net, on_device, label.shape[-2:], state.amp, mode).argmax(1)[0]
        cm += confusion_matrix(pred, label.to(state.device), num_classes, ignore)
        if state.show_dir:
            write_picture(state, dataset.pairs[index][0], image, label, pred)
    if iterator is not loader:
        iterator.close()
    distributed.all_reduce_sum(cm)
    images_per_s = len(dataset) / max(time.perf_counter() - t0, 1e-9)
    metrics = compute_metrics(cm.cpu())
    state.log(format_val(iteration, cfg["schedule"]["max_iters"], mode.name, metrics,
                         images_per_s))
    state.log("\n".join(per_class_table(state.class_names, metrics, mode.name)))
    if state.dist.is_main:
        write_eval_files(state, iteration, mode.name, metrics, cm)
    if state.scalars is not None:
        state.scalars.add({f"val/{k}": metrics[k] for k in ("mIoU", "aAcc", "mAcc")}, iteration)
    return metrics


def write_picture(state, image_path, image, label, pred):
    """``<show_dir>/<image stem>.png``: input | ground truth | prediction | error map, at the
    label's size. ``image`` is what the model was given (for TTA the list of scales; the one
    at the label's size is shown when there is one)."""
    label = label.numpy()
    if isinstance(image, list):
        image = next((i for i in image if tuple(i.shape[-2:]) == label.shape), image[0])
    image = image.permute(1, 2, 0).cpu().numpy()
    if image.shape[:2] != label.shape:
        image = cv2.resize(image, label.shape[::-1], interpolation=cv2.INTER_LINEAR)
    strip = comparison_strip(image, label, pred.cpu().numpy(), state.palette,
                             state.cfg["data"]["ignore_index"])
    os.makedirs(state.show_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(image_path))[0]
    if not cv2.imwrite(os.path.join(state.show_dir, f"{stem}.png"),
                       cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
        raise UserError(f"cannot write pictures to --show-dir {state.show_dir}; check that it "
                        "is a writable folder")


def write_eval_files(state, iteration, mode_name, metrics, cm):
    """``eval_iter_<N>_<mode>.json`` (summary, per-class table, confusion matrix) and
    ``.csv`` (one row per class, then the means) in ``state.results_dir``."""
    per_class = [{"class": n, "IoU": i, "Acc": a} for n, i, a in
                 zip(state.class_names, metrics["IoU"], metrics["Acc"])]
    record = {"iteration": iteration, "mode": mode_name,
              **{k: metrics[k] for k in ("aAcc", "mIoU", "mAcc")},
              "per_class": per_class, "confusion_matrix": cm.cpu().tolist()}
    stem = os.path.join(state.results_dir, f"eval_iter_{iteration}_{mode_name}")
    os.makedirs(state.results_dir, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(record, f, indent=1, allow_nan=True)
    with open(stem + ".csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "IoU", "Acc"])
        writer.writerows([r["class"], f"{r['IoU']:.2f}", f"{r['Acc']:.2f}"] for r in per_class)
        writer.writerow(["mean", f"{metrics['mIoU']:.2f}", f"{metrics['mAcc']:.2f}"])


def start_profiler(state):
    """``--prof``: record 5 iterations after 2 of warm-up into a Chrome trace."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if state.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    prof = torch.profiler.profile(activities=activities,
                                  schedule=torch.profiler.schedule(wait=0, warmup=2, active=5,
                                                                   repeat=1))
    prof.start()
    return prof


def stop_profiler(prof, state):
    prof.stop()
    if state.dist.is_main:
        path = os.path.join(state.work_dir, "profile_trace.json")
        prof.export_chrome_trace(path)
        state.log(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        state.log(f"Profiler trace written to {path}")
