"""One benchmark for every model: training and inference throughput, eager vs fast paths.

    python3 -m common.tools.benchmark --model BiSeNetV1 --device cpu --batch 2 --crop 512 512
        [--config FILE] [--precision auto|fp32|amp] [--[no-]channels-last] [--compile]
        [--iters 10] [--warmup 3] [--only train,e2e,data,infer] [--json bench.json]

Prints one table and writes JSON:
- ``train``: model-only training (device tensors; forward + backward + SGD step; warm-up
  excluded), fp32 eager and the fast path (channels_last + AMP: fp16 with loss scaling on
  cuda/npu; bf16 autocast on CPU where it is measured faster than fp32, see ``--precision``;
  ``--compile`` adds torch.compile), images/s, the ratio
  between them, and the FLOPs of one step (torch.utils.flop_counter): achieved TFLOP/s,
  and on a GPU the share of its peak.
- ``e2e``: training with the real data pipeline (DataLoader, ``--workers`` per device) on
  Cityscapes-size 2048x1024 PNGs (made once from the synthetic dataset), model fast path;
  transforms in the workers, then on the device (``--device-augment``: workers only decode).
- ``data``: the train pipeline alone (decode + resize + crop + flip + photometric), images/s
  in one process, i.e. per worker, from the PNGs and from the decoded-data cache
  (``train.py --prepare-data``); plus PNG decode speed of OpenCV and Pillow.
- ``infer``: batch 1 at the dataset's test size (1024x2048 Cityscapes, 512x512 VOC): eager
  fp32, the fast path (BN and ReLU folded into convs, channels_last (on CPU the layout measured
  faster), + half precision on accelerators and, where measured faster, on CPUs with native
  bf16) and ONNX Runtime on the exported model.

Each table names the fast path's precision, and is headed by the CPU model and ISA features.
"""
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.amp import MixedPrecision  # noqa: E402
from common.checkpoint import atomic_write_bytes  # noqa: E402
from common import decoded  # noqa: E402
from common.config import load_config  # noqa: E402
from common.data import prepare_decoded  # noqa: E402
from common.datasets import PadCollate, SegDataset, read_image  # noqa: E402
from common.device import DEVICE_CHOICES, select_device, synchronize  # noqa: E402
from common.device_caps import caps, check_channels_last  # noqa: E402
from common.device_augment import DeviceAugment, list_collate  # noqa: E402
from common.losses import heads_cross_entropy  # noqa: E402
from common.training import device_batch, pinning, sgd  # noqa: E402
from common.errors import ArgParser, UserError, check_output_path, user_errors  # noqa: E402
from common.fuse import fast_inference_model  # noqa: E402
from common.host_memory import memory_policy_for  # noqa: E402
from common.cache import cache_dir  # noqa: E402
from common.transforms import Normalize, build_train_pipeline  # noqa: E402

from BiSeNetV1.bisenetv1 import BiSeNetV1  # noqa: E402
from BiSeNetV2.bisenetv2 import BiSeNetV2  # noqa: E402
from ICNet.icnet import ICNet  # noqa: E402
from PSPNet.pspnet import PSPNet  # noqa: E402

BENCH_OPTIM = {"lr": 1e-4, "momentum": 0.9, "weight_decay": 0.0}  # small steps: random labels
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class BenchTarget:
    """A model as the benchmark measures it: network class, reference recipe (relative to the
    repository) and the dataset's test size (h, w)."""
    network: type
    recipe: str
    test_size: tuple


MODELS = {
    "BiSeNetV1": BenchTarget(BiSeNetV1, "BiSeNetV1/configs/bisenetv1_r50-d32_cityscapes-1024x1024_160k.yaml",
                             (1024, 2048)),
    "BiSeNetV2": BenchTarget(BiSeNetV2, "BiSeNetV2/configs/bisenetv2_fcn_cityscapes-1024x1024_160k.yaml",
                             (1024, 2048)),
    "PSPNet": BenchTarget(PSPNet, "PSPNet/configs/pspnet_r50-d8_voc12aug-512x512_20k.yaml",
                          (512, 512)),
    "ICNet": BenchTarget(ICNet, "ICNet/configs/icnet_r50-d8_cityscapes-832x832_80k.yaml",
                         (1024, 2048)),
}
# Dense peak TFLOP/s (fp32, tf32, bf16/fp16) by device-name fragment, first match wins, from
# NVIDIA's data sheets (their tensor-core figures "with sparsity" halved). torch.cuda reports
# e.g. "NVIDIA H100 80GB HBM3" (SXM), "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB".
PEAK_TFLOPS = (("H100 PCIe", (51.0, 378.0, 756.0)), ("H100 NVL", (60.0, 417.5, 835.5)),
               ("H200 NVL", (60.0, 417.5, 835.5)), ("H200", (67.0, 494.5, 989.5)),
               ("H100", (67.0, 494.5, 989.5)), ("A100", (19.5, 156.0, 312.0)))
SECTIONS = ("train", "e2e", "data", "infer")


def load_target(model):
    """The :class:`BenchTarget` named ``--model``."""
    if model not in MODELS:
        raise UserError(f"--model {model!r} is not one of {', '.join(MODELS)}")
    return MODELS[model]


def target_config(target, config=None):
    """``config``, or the target's reference recipe, resolved."""
    return load_config(config or os.path.join(REPO, target.recipe), model=target.network)


def seconds_per_call(fn, iters, warmup, device):
    """Mean wall time of ``fn()`` over ``iters`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    synchronize(device)
    return (time.perf_counter() - t0) / iters


def train_step(model, optimizer, images, labels, cfg, amp):
    """One training iteration on device tensors (the engine's step without data loading)."""
    def step():
        with amp.autocast():
            outputs = model(images)
        loss, _ = heads_cross_entropy(outputs, labels, cfg["loss"]["weights"],
                                      cfg["data"]["ignore_index"])
        optimizer.zero_grad(set_to_none=True)
        amp.backward_and_step(loss, optimizer)
    return step


def build_training(spec, cfg, device, fast, channels_last, compile_model, level=None):
    """Model, the trainers' optimizer and AMP policy; ``fast``: the fast path's layout and
    ``level`` (default O1), else fp32 eager."""
    torch.manual_seed(0)
    model = spec.network(**cfg["model"]).to(device).train()
    if fast and channels_last and caps(device.type).channels_last_weights:  # as TrainLoop
        model = model.to(memory_format=torch.channels_last)
    amp = MixedPrecision(device.type, (level or "O1") if fast else "O0")
    optimizer = sgd(model.parameters(), BENCH_OPTIM, amp)  # the trainers' optimizer
    if fast and compile_model:
        model = torch.compile(model)
    return model, optimizer, amp


def random_batch(cfg, batch, crop, device, channels_last):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *crop, generator=g).to(device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, cfg["data"]["num_classes"], (batch, *crop), generator=g)
    return images, labels.to(device)


def step_flops(spec, cfg, device, batch, crop):
    """FLOPs of one fp32 forward + backward (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode
    model, optimizer, amp = build_training(spec, cfg, device, False, False, False)
    images, labels = random_batch(cfg, batch, crop, device, False)
    counter = FlopCounterMode(display=False)
    with counter:
        train_step(model, optimizer, images, labels, cfg, amp)()
    return counter.get_total_flops()


def fast_train_step(spec, cfg, device, args, level):
    """The fast path's training step at autocast ``level``, ready to time."""
    model, optimizer, amp = build_training(spec, cfg, device, True, args.channels_last,
                                           args.compile, level)
    images, labels = random_batch(cfg, args.batch, args.crop, device, args.channels_last)
    return train_step(model, optimizer, images, labels, cfg, amp)


def train_level(spec, cfg, device, args):
    """The fast training path's autocast level on this machine (:func:`fast_level`), chosen
    once per run."""
    if getattr(args, "train_level", None) is None:
        args.train_level = fast_level(
            device, args, lambda level: fast_train_step(spec, cfg, device, args, level))
    return args.train_level


def bench_train(spec, cfg, device, args):
    rows, results = [], {}
    level = train_level(spec, cfg, device, args)
    model, optimizer, amp = build_training(spec, cfg, device, False, False, False)
    images, labels = random_batch(cfg, args.batch, args.crop, device, False)
    for fast, step in ((False, train_step(model, optimizer, images, labels, cfg, amp)),
                       (True, fast_train_step(spec, cfg, device, args, level))):
        results[fast] = args.batch / seconds_per_call(step, args.iters, args.warmup, device)
    flops = step_flops(spec, cfg, device, args.batch, args.crop)
    name = describe_fast(args, device, training=True, half=level == "O1")
    rows.append(("train", "eager fp32", results[False], 1.0))
    rows.append(("train", name, results[True], results[True] / results[False]))
    tflops = {label: flops * results[fast] / args.batch / 1e12
              for label, fast in (("eager fp32", False), (name, True))}
    peak = peak_tflops(device)
    tf32 = torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32
    shares = {label: share_of_peak(value, peak, label != "eager fp32", tf32)
              for label, value in tflops.items()}
    return rows, {"step_gflops": flops / 1e9, "achieved_tflops": tflops,
                  "peak_tflops": peak, "share_of_peak": shares}


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
             "amx_bf16")  # the /proc/cpuinfo flags that decide oneDNN's fp32 / bf16 kernels


def cpu_description():
    """The CPU model and its ISA features that matter here, for every benchmark table."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    isa = ", ".join(f for f in ISA_FLAGS if f in flags) or "none of " + ", ".join(ISA_FLAGS)
    return (f"CPU {model} ({os.cpu_count()} cores; {isa}; torch CPU capability "
            f"{torch.backends.cpu.get_cpu_capability()})")


def native_bf16():
    """Does oneDNN have native bf16 kernels here (AVX512-BF16 or AMX)?"""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def fast_level(device, args, candidate):
    """The fast path's autocast level: "O1" (fp16 / bf16) or "O0" (fp32). Accelerators: O1.
    CPU: ``--precision amp`` / ``fp32`` as asked; ``auto``: fp32 without native bf16, else
    whichever level runs faster on this machine, measured: ``candidate(level)`` gives a
    callable that is timed (bf16 gains little where the step is bound by memory, and on CPUs
    without AMX)."""
    if not caps(device.type).host_tuning:
        return "O1"
    if args.precision != "auto":
        return "O1" if args.precision == "amp" else "O0"
    if not native_bf16():
        return "O0"
    seconds = {level: seconds_per_call(candidate(level), 2, 1, device) for level in ("O0", "O1")}
    return min(seconds, key=seconds.get)


def describe_fast(args, device, training, half):
    parts = []
    if not training:
        parts.append("BN+ReLU folded")
    if not training and caps(device.type).host_tuning:
        parts.append("measured layout")  # common.segmentor.eval_layout
    elif args.channels_last:
        parts.append("channels_last")
    if half:
        parts.append({torch.bfloat16: "bf16", torch.float16: "fp16"}[
            caps(device.type).autocast_dtype])
    if args.compile:
        parts.append("compiled")
    return "fast: " + " + ".join(parts)


def peak_tflops(device):
    """The GPU's dense peaks, or None off a GPU (and no figures for an unknown GPU)."""
    if device.type != "cuda":
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


def peak_for_name(name):
    for fragment, (fp32, tf32, half) in PEAK_TFLOPS:
        if fragment in name:
            return {"device": name, "fp32": fp32, "tf32": tf32, "half": half}
    return {"device": name}


def share_of_peak(achieved, peak, half, tf32):
    """Achieved TFLOP/s as a share of the peak that applies: fp16/bf16 for the fast path;
    for "fp32", TF32's when cuDNN / matmuls may use it (torch's default for convolutions)."""
    key = "half" if half else ("tf32" if tf32 else "fp32")
    return achieved / peak[key] if peak and key in peak else None


def fast_inference_call(model, x, args, level):
    """``model``'s inference fast path on ``x`` at autocast ``level``, ready to time."""
    amp = MixedPrecision(x.device.type, level)
    fast_model = fast_inference_model(model, args.channels_last, amp.autocast_dtype)
    if args.compile:
        fast_model = torch.compile(fast_model)

    def call():
        with amp.autocast():
            return fast_model(x)
    return call


def bench_inference(spec, cfg, device, args):
    size = tuple(args.infer_size or spec.test_size)
    torch.manual_seed(0)
    model = spec.network(**cfg["model"]).to(device).eval()
    x = torch.randn(1, 3, *size, device=device)
    rows = []
    with torch.no_grad():
        eager = 1 / seconds_per_call(lambda: model(x), args.iters, args.warmup, device)
        rows.append(("infer", f"eager fp32 {size[0]}x{size[1]}", eager, 1.0))
        level = fast_level(device, args, lambda level: fast_inference_call(model, x, args, level))
        fps = 1 / seconds_per_call(fast_inference_call(model, x, args, level), args.iters,
                                   args.warmup, device)
        rows.append(("infer", describe_fast(args, device, False, level == "O1"), fps,
                     fps / eager))
    if caps(device.type).host_tuning:  # ONNX Runtime's CPU execution provider
        ort = onnx_fps(model, size, args)
        rows.append(("infer", "ONNX Runtime (CPU EP)", ort, ort / eager))
    return rows


def onnx_fps(model, size, args):
    import onnxruntime as ort

    from common.export import export_onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export_onnx(model.cpu(), path, (1, 3, *size))
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: np.random.rand(1, 3, *size).astype(np.float32)}
        return 1 / seconds_per_call(lambda: session.run(None, feed), args.iters, args.warmup,
                                    torch.device("cpu"))


def cityscapes_size_pairs(count=8):
    """``count`` 2048x1024 image/label PNG pairs (synthetic frames upscaled), made once."""
    from common.tools.synthetic_cityscapes import ensure_synthetic_cityscapes
    from common.cityscapes import find_pairs
    folder = os.path.join(cache_dir(), "bench_2048x1024")
    pairs = []
    source = find_pairs(ensure_synthetic_cityscapes(), "train")[:count]
    os.makedirs(folder, exist_ok=True)
    for i, (img_path, label_path) in enumerate(source):
        out_img = os.path.join(folder, f"{i}_leftImg8bit.png")
        out_label = os.path.join(folder, f"{i}_gtFine_labelTrainIds.png")
        if not (os.path.isfile(out_img) and os.path.isfile(out_label)):
            img = cv2.resize(cv2.imread(img_path), (2048, 1024), interpolation=cv2.INTER_CUBIC)
            label = cv2.resize(cv2.imread(label_path, cv2.IMREAD_UNCHANGED), (2048, 1024),
                               interpolation=cv2.INTER_NEAREST)
            cv2.imwrite(out_img + ".tmp.png", img)
            os.replace(out_img + ".tmp.png", out_img)
            cv2.imwrite(out_label + ".tmp.png", label)
            os.replace(out_label + ".tmp.png", out_label)
        pairs.append((out_img, out_label))
    return pairs


def decoded_variants(pairs):
    """{"PNG": folder, "decoded": folder}: decoded-data cache folders to measure ``pairs``
    without (an empty one) and with the cache (prepared once)."""
    folders = {"PNG": os.path.join(cache_dir(), "bench_no_decoded"),
               "decoded": os.path.join(cache_dir(), "bench_decoded")}
    with decoded.cache_at(folders["decoded"]):
        prepare_decoded({"bench": pairs}, 1, lambda message: None)
    return folders


def with_cache(folder, fn):
    """``fn`` as a call that runs with ``folder`` as the decoded-data cache."""
    def call():
        with decoded.cache_at(folder):
            return fn()
    return call


def cityscapes_data_cfg(cfg, crop):
    """The config's data section at Cityscapes scale with ``crop``."""
    return dict(cfg["data"], scale=[2048, 1024], crop_size=list(crop))


def train_keys(pairs, count):
    """``count`` training keys over ``pairs``: sample i is pair i mod n with seed i."""
    return [(i % len(pairs), i) for i in range(count)]


def bench_data(cfg, args):
    pairs = cityscapes_size_pairs()
    dataset = SegDataset(pairs, build_train_pipeline(cityscapes_data_cfg(cfg, args.crop)),
                         check_sizes=False)
    keys = train_keys(pairs, max(args.iters, len(pairs)))
    per_worker = {name: len(keys) / seconds_per_call(
        with_cache(folder, lambda: [dataset[k] for k in keys]), 1, 1, torch.device("cpu"))
        for name, folder in decoded_variants(pairs).items()}
    decode = {}
    for name, fn in (("OpenCV", lambda p: cv2.imread(p, cv2.IMREAD_COLOR)),
                     ("Pillow", lambda p: np.asarray(Image.open(p).convert("RGB"))),
                     ("read_image (pyspng)", read_image)):
        decode[name] = len(pairs) / seconds_per_call(lambda: [fn(p) for p, _ in pairs], 2, 1,
                                                     torch.device("cpu"))
    rows = [("data", f"train pipeline per worker (2048x1024, {name})", value,
             value / per_worker["PNG"]) for name, value in per_worker.items()]
    rows += [("data", f"PNG decode {name}", value, value / decode["OpenCV"])
             for name, value in decode.items()]
    return rows


def bench_e2e(spec, cfg, device, args):
    """Training with the data pipeline: transforms in the workers, then on the device."""
    pairs = cityscapes_size_pairs()
    data_cfg = cityscapes_data_cfg(cfg, args.crop)
    rows = []
    for on_device in (False, True):
        dataset = SegDataset(pairs, None if on_device else build_train_pipeline(data_cfg),
                             check_sizes=False)
        loader = torch.utils.data.DataLoader(
            dataset, sampler=train_keys(pairs, (args.warmup + args.iters) * args.batch),
            batch_size=args.batch, num_workers=args.workers, drop_last=True,
            collate_fn=list_collate if on_device else PadCollate(args.crop,
                                                                 cfg["data"]["ignore_index"]),
            prefetch_factor=4 if args.workers else None, **pinning(device))
        augment = DeviceAugment(data_cfg) if on_device else None
        model, optimizer, amp = build_training(spec, cfg, device, True, args.channels_last,
                                               args.compile, train_level(spec, cfg, device, args))
        normalize, it = Normalize(), iter(loader)

        def step():
            images, labels = device_batch(next(it), device, normalize, augment,
                                          args.channels_last)
            train_step(model, optimizer, images, labels, cfg, amp)()
        rate = args.batch / seconds_per_call(step, args.iters, args.warmup, device)
        where = "on the device" if on_device else "in the workers"
        rows.append(("e2e", f"fast path, {args.workers} workers, transforms {where}", rate,
                     rate / rows[0][2] if rows else 1.0))
    return rows


def build_parser():
    p = ArgParser(description="Training / inference / data-pipeline throughput.")
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--config", default=None, help="recipe (default: the model's default)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--infer-size", dest="infer_size", type=int, nargs=2, default=None,
                   metavar=("H", "W"), help="default: the dataset's test size")
    p.add_argument("--precision", choices=("auto", "fp32", "amp"), default="auto",
                   help="fast paths on CPU: bf16 autocast where it is measured faster on a CPU "
                        "with native bf16 (auto), never (fp32) or always (amp)")
    p.add_argument("--channels-last", dest="channels_last", action="store_true", default=None,
                   help="NHWC fast paths (default: where the device supports them: cpu, cuda)")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast paths")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers for e2e")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--json", default=None, help="write the results here")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    sections = args.only.split(",")
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise UserError(f"--only {','.join(unknown)} is unknown; use {','.join(SECTIONS)}")
    if args.batch < 1 or args.iters < 1 or args.warmup < 0 or min(args.crop) < 32:
        raise UserError("--batch and --iters must be >= 1, --warmup >= 0, --crop >= 32x32")
    if args.infer_size and min(args.infer_size) < 32:
        raise UserError(f"--infer-size {args.infer_size[0]} {args.infer_size[1]} is too small; "
                        "use at least 32 32")
    if args.workers is not None and args.workers < 0:
        raise UserError(f"--workers must be >= 0, got {args.workers}")
    if args.json:
        check_output_path(args.json, "--json")
    spec = load_target(args.model)
    cfg = target_config(spec, args.config)
    device = select_device(args.device)
    if args.channels_last is None:
        args.channels_last = caps(device.type).channels_last
    elif args.channels_last:
        check_channels_last(device.type)
    host_memory = memory_policy_for(device.type)  # as train.py runs
    torch.backends.cudnn.benchmark = True
    rows, extra = [], {}
    try:
        if "train" in sections:
            train_rows, extra["train"] = bench_train(spec, cfg, device, args)
            rows += train_rows
        if "e2e" in sections:
            rows += bench_e2e(spec, cfg, device, args)
    except ValueError as exc:
        if "more than 1 value per channel" in str(exc):
            raise UserError(f"--batch {args.batch} is too small to train {args.model} (its "
                            "BatchNorm after global pooling needs 2 or more)") from None
        raise
    if "data" in sections:
        rows += bench_data(cfg, args)
    if "infer" in sections:
        rows += bench_inference(spec, cfg, device, args)
    print(f"{args.model} on {device} ({torch.get_num_threads()} threads), batch {args.batch}, "
          f"crop {args.crop[0]}x{args.crop[1]}, {args.iters} iterations after {args.warmup}")
    print(cpu_description())
    print(f"host memory: {host_memory}")
    print(f"{'section':<7} {'variant':<48} {'images/s':>10} {'ratio':>7}")
    for section, variant, value, ratio in rows:
        print(f"{section:<7} {variant:<48} {value:>10.2f} {ratio:>6.2f}x")
    if "train" in extra:
        t = extra["train"]
        print(f"train step: {t['step_gflops']:.1f} GFLOP; achieved TFLOP/s "
              + ", ".join(f"{k}: {v:.3f}" + (f" ({100 * t['share_of_peak'][k]:.1f}% of peak)"
                                              if t["share_of_peak"][k] is not None else "")
                          for k, v in t["achieved_tflops"].items())
              + (f"; peak {t['peak_tflops']}" if t["peak_tflops"] else ""))
    record = {"model": args.model, "device": str(device), "cpu": cpu_description(),
              "host_memory": host_memory,
              "batch": args.batch,
              "crop": args.crop, "iters": args.iters, "warmup": args.warmup,
              "rows": [dict(zip(("section", "variant", "images_per_s", "ratio"), r))
                       for r in rows], **extra}
    if args.json:
        atomic_write_bytes(args.json, lambda f: f.write(json.dumps(record, indent=1).encode()))
    return record


if __name__ == "__main__":
    with user_errors():
        main()
