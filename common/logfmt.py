"""The log-line format, written by the engine and read by the scripts' result-log parser.

    Iter(train) [  50/1000]  lr: 4.9000e-03  loss: 2.9412  decode.loss_ce: 1.2000 ...  time: 0.5123  data_time: 0.0101  data_wait_pct: 2.0  images/s: 7.81  memory: 1234
    Iter(val) [1000/1000]  mode: whole  aAcc: 80.12  mIoU: 45.33  mAcc: 55.20
    Summary  iters: 950  images/s: 12.34  iter_time_ms: 512.30  train_time_s: 123.40
    Run  model: BiSeNetV1  world_size: 8  batch_per_device: 4  max_iters: 160000

followed, for evaluations, by the per-class table. Keep writers and parsers here only.
"""
import re

TRAIN_TAG = "Iter(train)"
VAL_TAG = "Iter(val)"
SUMMARY_TAG = "Summary"
RUN_TAG = "Run"
_ITER = re.compile(r"Iter\((train|val)\) \[\s*(\d+)/(\d+)\]")
_KV = re.compile(r"([A-Za-z_][\w./]*): (\S+)")


def format_train(iteration, max_iters, lr, losses, time_s, data_time_s, images_per_s,
                 memory_mb):
    width = len(str(max_iters))
    parts = [f"{TRAIN_TAG} [{iteration:>{width}}/{max_iters}]", f"lr: {lr:.4e}"]
    parts += [f"{k}: {v:.4f}" for k, v in losses.items()]
    parts += [f"time: {time_s:.4f}", f"data_time: {data_time_s:.4f}",
              f"data_wait_pct: {100 * data_wait_share(data_time_s, time_s):.1f}",
              f"images/s: {images_per_s:.2f}", f"memory: {memory_mb:.0f}"]
    return "  ".join(parts)


def data_wait_share(data_time_s, time_s):
    """The share of an iteration's time spent waiting for the loader's next batch."""
    return data_time_s / time_s if time_s > 0 else 0.0


def format_val(iteration, max_iters, mode, metrics, images_per_s):
    return "  ".join([f"{VAL_TAG} [{iteration}/{max_iters}]", f"mode: {mode}"]
                     + [f"{k}: {metrics[k]:.2f}" for k in ("aAcc", "mIoU", "mAcc")]
                     + [f"images/s: {images_per_s:.2f}"])


def format_run(model, world_size, batch_per_device, max_iters):
    return (f"{RUN_TAG}  model: {model}  world_size: {world_size}  "
            f"batch_per_device: {batch_per_device}  max_iters: {max_iters}")


def format_summary(iters, images_per_s, iter_time_ms, train_time_s):
    return (f"{SUMMARY_TAG}  iters: {iters}  images/s: {images_per_s:.2f}  "
            f"iter_time_ms: {iter_time_ms:.2f}  train_time_s: {train_time_s:.2f}")


def _values(line, start):
    out = {}
    for key, raw in _KV.findall(line[start:]):
        try:
            out[key] = float(raw)
        except ValueError:
            out[key] = raw
    return out


def parse_log(lines):
    """Return ``{'train': [...], 'val': [...], 'summary': {...}, 'run': {...}}`` (the last two
    None when absent) from log lines."""
    result = {"train": [], "val": [], "summary": None, "run": None}
    for line in lines:
        match = _ITER.search(line)
        if match:
            record = {"iter": int(match.group(2)), "max_iters": int(match.group(3))}
            record.update(_values(line, match.end()))
            result[match.group(1)].append(record)
        elif f"{SUMMARY_TAG}  iters:" in line:
            result["summary"] = _values(line, line.index(SUMMARY_TAG) + len(SUMMARY_TAG))
        elif f"{RUN_TAG}  model:" in line:
            result["run"] = _values(line, line.index(RUN_TAG) + len(RUN_TAG))
    return result
