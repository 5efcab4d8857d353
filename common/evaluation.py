"""Evaluation: one confusion matrix over a split, in the config's inference mode.

A train.py builds one :class:`Evaluator` for its validation set and hands it to the training
loop (``evaluate(model, iteration)``) or, for ``--eval-only``, to :func:`evaluate_checkpoint`.
Whole, slide or TTA inference (common.inference), logits resized to the label size; with
several processes rank r of N takes images r, r+N, ... (every image once) and the matrices are
summed. The summary and per-class table go to the log, JSON/CSV to the results folder (the work
dir, or next to the evaluated checkpoint), pictures to ``--show-dir``.
"""
import contextlib
import csv
import json
import os
import sys
import time

import cv2
import torch
from tqdm import tqdm

from common import distributed
from common.checkpoint import load_model_weights, newest_checkpoint
from common.config import config_path_value
from common.datasets import loader_worker_init
from common.device import synchronize
from common.errors import UserError
from common.device_caps import caps
from common.fuse import fast_inference_model
from common.inference import InferenceMode, predict_logits
from common.logfmt import format_val
from common.metrics import compute_metrics, confusion_matrix, per_class_table
from common.training import (next_batch, own_generator, start_profiler, stop_profiler,
                             unwrap)
from common.visualize import comparison_strip


def first_item(batch):
    return batch[0]


@contextlib.contextmanager
def no_cudnn_benchmark():
    """cudnn's benchmark mode times every algorithm for each new input shape; evaluation
    images differ in size (VOC keeps their aspect ratio, TTA rescales), so it would time
    nearly every image. Training's setting is restored afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


class Evaluator:
    """``evaluator(model, iteration)`` evaluates ``dataset`` and returns the metrics."""

    def __init__(self, dataset, cfg, rt, class_names, palette, show_dir=None, profile=False):
        self.dataset, self.cfg, self.rt = dataset, cfg, rt
        self.class_names, self.palette = class_names, palette
        self.show_dir = show_dir and os.path.abspath(show_dir)
        self.profile = profile  # --prof_test: profile inference of the first images
        self.mode = InferenceMode.from_config(cfg)

    def __call__(self, model, iteration=0, results_dir=None):
        """Confusion-matrix evaluation in fp32 (as mmseg evaluates, whatever the training's
        precision); logs the summary and the per-class table, writes them as JSON/CSV to
        ``results_dir`` (default: the work dir) and pictures to the show dir."""
        with no_cudnn_benchmark():
            return self._evaluate(model, iteration, results_dir)

    @torch.no_grad()
    def _evaluate(self, model, iteration, results_dir):
        cfg, rt, mode, dataset = self.cfg, self.rt, self.mode, self.dataset
        num_classes, ignore = cfg["data"]["num_classes"], cfg["data"]["ignore_index"]
        net = unwrap(model)
        distributed.broadcast_buffers(net)  # evaluate the model rank 0 saves
        net.eval()
        if cfg["eval"]["fast"]:
            net = fast_inference_model(net, caps(rt.device.type).channels_last)
        indices = range(rt.dist.rank, len(dataset), rt.dist.world_size)
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(dataset, indices), batch_size=1,
            num_workers=min(cfg["data"]["num_workers"], 2), collate_fn=first_item,
            generator=own_generator(cfg["runtime"]["seed"]), worker_init_fn=loader_worker_init)
        cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=rt.device)
        iterator = loader
        if rt.dist.is_main:
            iterator = tqdm(loader, desc=f"eval ({mode.name})", file=sys.stderr, mininterval=2.0)
        it = iter(iterator)
        profiler = start_profiler(rt.device) if self.profile else None
        synchronize(rt.device)
        t0 = time.perf_counter()
        for _ in range(len(indices)):
            image, label, index = next_batch(it)
            on_device = ([i.to(rt.device) for i in image] if isinstance(image, list)
                         else image.to(rt.device))
            pred = predict_logits(net, on_device, label.shape[-2:], None, mode).argmax(1)[0]
            cm += confusion_matrix(pred, label.to(rt.device), num_classes, ignore)
            if self.show_dir:
                self.write_picture(dataset.pairs[index][0], image, label, pred)
            if profiler is not None:
                profiler.step()
        if iterator is not loader:
            iterator.close()
        if profiler is not None:
            stop_profiler(profiler, rt, "profile_test_trace.json")
        distributed.all_reduce_sum(cm)
        images_per_s = len(dataset) / max(time.perf_counter() - t0, 1e-9)
        metrics = compute_metrics(cm.cpu())
        rt.log(format_val(iteration, cfg["schedule"]["max_iters"], mode.name, metrics,
                          images_per_s))
        rt.log("\n".join(per_class_table(self.class_names, metrics, mode.name)))
        if rt.dist.is_main:
            self.write_files(results_dir or rt.work_dir, iteration, metrics, cm)
        if rt.scalars is not None:
            rt.scalars.add({f"val/{k}": metrics[k] for k in ("mIoU", "aAcc", "mAcc")}, iteration)
        return metrics

    def write_picture(self, image_path, image, label, pred):
        """``<show_dir>/<image stem>.png``: input | ground truth | prediction | error map, at the
        label's size. ``image`` is what the model was given (for TTA the list of scales; the one
        at the label's size is shown when there is one)."""
        label = label.numpy()
        if isinstance(image, list):
            image = next((i for i in image if tuple(i.shape[-2:]) == label.shape), image[0])
        image = image.permute(1, 2, 0).cpu().numpy()
        if image.shape[:2] != label.shape:
            image = cv2.resize(image, label.shape[::-1], interpolation=cv2.INTER_LINEAR)
        strip = comparison_strip(image, label, pred.cpu().numpy(), self.palette,
                                 self.cfg["data"]["ignore_index"])
        os.makedirs(self.show_dir, exist_ok=True)
        stem = os.path.splitext(os.path.basename(image_path))[0]
        if not cv2.imwrite(os.path.join(self.show_dir, f"{stem}.png"),
                           cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
            raise UserError(f"cannot write pictures to --show-dir {self.show_dir}; check that it "
                            "is a writable folder")

    def write_files(self, results_dir, iteration, metrics, cm):
        """``eval_iter_<N>_<mode>.json`` (summary, per-class table, confusion matrix) and
        ``.csv`` (one row per class, then the means) in ``results_dir``."""
        mode_name = self.mode.name
        per_class = [{"class": n, "IoU": i, "Acc": a} for n, i, a in
                     zip(self.class_names, metrics["IoU"], metrics["Acc"])]
        record = {"iteration": iteration, "mode": mode_name,
                  **{k: metrics[k] for k in ("aAcc", "mIoU", "mAcc")},
                  "per_class": per_class, "confusion_matrix": cm.cpu().tolist()}
        stem = os.path.join(results_dir, f"eval_iter_{iteration}_{mode_name}")
        os.makedirs(results_dir, exist_ok=True)
        with open(stem + ".json", "w") as f:
            json.dump(record, f, indent=1, allow_nan=True)
        with open(stem + ".csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["class", "IoU", "Acc"])
            writer.writerows([r["class"], f"{r['IoU']:.2f}", f"{r['Acc']:.2f}"]
                             for r in per_class)
            writer.writerow(["mean", f"{metrics['mIoU']:.2f}", f"{metrics['mAcc']:.2f}"])


def evaluator_for(sets, cfg, rt, dataset, args):
    """The :class:`Evaluator` of the run's val set (None when the run does not validate);
    ``dataset`` is the dataset module (its ``CLASSES`` and ``PALETTE``)."""
    if sets.val is None:
        return None
    return Evaluator(sets.val, cfg, rt, dataset.CLASSES, dataset.PALETTE, args.show_dir,
                     args.prof_test)


def checkpoint_to_evaluate(checkpoint, cfg, rt, model_dir):
    """``--checkpoint``, else the config's ``paths.ckpt_path``, else the work dir's latest."""
    path = (checkpoint or config_path_value(cfg, "ckpt_path", model_dir)
            or newest_checkpoint(rt.work_dir))
    if path is None:
        raise UserError(f"--eval-only needs --checkpoint (no checkpoint in {rt.work_dir})")
    return path


def evaluate_checkpoint(model, evaluate, checkpoint, model_dir):
    """``--eval-only``: load the checkpoint (:func:`checkpoint_to_evaluate`) into ``model`` and
    evaluate it; results go next to the checkpoint."""
    rt = evaluate.rt
    path = checkpoint_to_evaluate(checkpoint, evaluate.cfg, rt, model_dir)
    meta = load_model_weights(model, path, rt.name).get("meta") or {}
    rt.log(f"Evaluating {path} ({evaluate.mode.name} inference)")
    model.to(rt.device)
    return evaluate(model, meta.get("iteration", 0), os.path.dirname(os.path.abspath(path)))
