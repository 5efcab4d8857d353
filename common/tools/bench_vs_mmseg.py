"""Side by side with mmsegmentation 1.2.2, in one process, so ratios hold on a noisy machine.

    python3 -m common.tools.bench_vs_mmseg --models BiSeNetV1 BiSeNetV2 PSPNet ICNet --crop 512 512

Needs mmseg installed next to this project's requirements (README, "Performance"; not a test
dependency). Both networks get the same weights (the state_dicts are key-for-key equal) and the
same inputs. Rounds alternate ours / mmseg so drifts in machine load hit both; each figure is
the median over rounds. Measured: the fp32 training step (forward + loss + backward + SGD),
our fast training step (channels_last, + bf16 autocast), fp32 whole-image inference at
``--infer-size`` (batch 1), our fast inference path (BN and ReLU folded, the layout measured
faster, + bf16), and the train data pipeline per worker on 2048x1024 PNGs (mmseg: its
config's ``train_pipeline`` through mmcv's transforms; ours with the transforms in the worker,
from the PNGs and from the decoded-data cache of ``train.py --prepare-data``, and with
``--device-augment``, where the worker only decodes).
The fast paths use bf16 where it is measured faster than fp32 on this CPU (``--precision
auto``; the table names the precision each used). Every table is headed by the CPU model and
its ISA features. The process runs with train.py's host-memory policy
(:mod:`common.host_memory`), which mmseg's side gets too: the ratios compare the code alone.
"""
import os
import statistics
import sys

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from common.tools.benchmark import (MODELS, build_training, cityscapes_data_cfg,  # noqa: E402
                                    cityscapes_size_pairs, cpu_description, decoded_variants,
                                    fast_inference_call, fast_level, fast_train_step,
                                    load_target, random_batch, seconds_per_call, target_config,
                                    train_keys, train_level, train_step, with_cache)
from common.datasets import SegDataset  # noqa: E402
from common.transforms import build_train_pipeline  # noqa: E402
from common.errors import ArgParser, UserError, user_errors  # noqa: E402
from common.host_memory import keep_freed_memory  # noqa: E402
from common.tools.mmseg_reference import (MMSEG_CONFIGS, build_mmseg, mmseg_config,  # noqa: E402
                                          stub_mmcv_ext)

CPU = torch.device("cpu")
PRECISION = {"O0": "fp32", "O1": "bf16"}  # the fast path's autocast level, as the table names it


def mmseg_samples(labels):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for label in labels:
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(data=label[None])
        sample.set_metainfo({"img_shape": tuple(label.shape), "ori_shape": tuple(label.shape),
                             "pad_shape": tuple(label.shape)})
        samples.append(sample)
    return samples


def mmseg_train_step(model, optimizer, images, labels):
    samples = mmseg_samples(labels)

    def step():
        losses = model.loss(images, samples)
        loss = sum(v for k, v in losses.items() if "loss" in k)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def mmseg_data(config_rel, pairs, crop):
    """Per-worker images/s of mmseg's train pipeline on ``pairs``."""
    from mmcv.transforms import Compose
    stub_mmcv_ext()
    from mmseg.utils import register_all_modules
    register_all_modules()
    pipeline_cfg = [dict(t) for t in mmseg_config(config_rel).train_pipeline]
    for t in pipeline_cfg:
        if t["type"] == "RandomResize":
            t["scale"] = (2048, 1024)
        if t["type"] == "RandomCrop":
            t["crop_size"] = tuple(crop)
    pipeline = Compose(pipeline_cfg)

    def run_all():
        for img, label in pairs:
            pipeline({"img_path": img, "seg_map_path": label, "reduce_zero_label": False,
                      "seg_fields": []})
    return run_all


def median_rates(candidates, rounds, iters, warmup, per_call):
    """{name: median images/s} measuring the candidates in alternating rounds."""
    times = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            times[name].append(seconds_per_call(fn, iters, warmup, CPU))
    return {name: per_call / statistics.median(t) for name, t in times.items()}


def compare(model_name, args):
    """{section: {variant: images/s}} for the sections in ``args.sections``."""
    spec = load_target(model_name)
    cfg = target_config(spec)
    config_rel = MMSEG_CONFIGS[model_name]
    result = {}
    if "data" in args.sections:
        result["data"] = compare_data(cfg, config_rel, args)
    if not {"train", "infer"} & set(args.sections):
        return result
    ours, optimizer, amp = build_training(spec, cfg, CPU, False, False, False)
    mm = build_mmseg(config_rel).train()
    mm.load_state_dict(ours.state_dict())
    mm_opt = torch.optim.SGD(mm.parameters(), lr=1e-4, momentum=0.9)
    images, labels = random_batch(cfg, args.batch, args.crop, CPU, False)
    if "train" in args.sections:
        args.train_level = None  # measured again for each model
        level = train_level(spec, cfg, CPU, args)
        result["train"] = median_rates({
            "mmseg fp32": mmseg_train_step(mm, mm_opt, images, labels),
            "ours fp32": train_step(ours, optimizer, images, labels, cfg, amp),
            f"ours fast {PRECISION[level]}": fast_train_step(spec, cfg, CPU, args, level),
        }, args.rounds, args.iters, args.warmup, args.batch)
    if "infer" in args.sections:
        result["infer"] = compare_inference(ours, mm, args)
    return result


def compare_inference(ours, mm, args):
    ours.eval()
    mm.eval()
    x = torch.randn(1, 3, *args.infer_size)
    metas = [{"img_shape": tuple(args.infer_size), "ori_shape": tuple(args.infer_size),
              "pad_shape": tuple(args.infer_size)}]
    with torch.no_grad():
        level = fast_level(CPU, args, lambda level: fast_inference_call(ours, x, args, level))
        return median_rates({"mmseg fp32": lambda: mm.encode_decode(x, metas),
                             "ours fp32": lambda: ours(x),
                             f"ours fast {PRECISION[level]}": fast_inference_call(ours, x, args,
                                                                                  level)},
                            args.rounds, args.iters, args.warmup, 1)


def compare_data(cfg, config_rel, args):
    pairs = cityscapes_size_pairs(args.data_images)
    keys = train_keys(pairs, len(pairs))
    dataset = SegDataset(pairs, build_train_pipeline(cityscapes_data_cfg(cfg, args.crop)),
                         check_sizes=False)
    decode_only = SegDataset(pairs, None, check_sizes=False)  # --device-augment: workers decode
    png, prepared = decoded_variants(pairs).values()
    return median_rates({"mmseg": with_cache(png, mmseg_data(config_rel, pairs, args.crop)),
                         "ours": with_cache(png, lambda: [dataset[k] for k in keys]),
                         "ours decoded": with_cache(prepared, lambda: [dataset[k] for k in keys]),
                         "ours dev-aug": with_cache(png, lambda: [decode_only[k] for k in keys])},
                        args.rounds, 1, 1, len(pairs))


def print_table(name, result, args):
    print(f"\n{name}: CPU {torch.get_num_threads()} threads, training batch {args.batch} crop "
          f"{args.crop[0]}x{args.crop[1]}, inference {args.infer_size[0]}x"
          f"{args.infer_size[1]} batch 1, median of {args.rounds} alternating rounds")
    print(f"  {'measure':<10} {'variant':<14} {'images/s':>9} {'vs mmseg':>9}")
    for section, rates in result.items():
        base = rates.get("mmseg fp32", rates.get("mmseg"))
        for variant, value in rates.items():
            print(f"  {section:<10} {variant:<14} {value:>9.3f} {value / base:>8.2f}x")


def main(argv=None):
    p = ArgParser(description="Our models vs mmsegmentation 1.2.2, side by side on the CPU.")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--infer-size", dest="infer_size", type=int, nargs=2, default=[512, 1024],
                   metavar=("H", "W"))
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--sections", nargs="+", default=["train", "infer", "data"],
                   choices=("train", "infer", "data"))
    p.add_argument("--data-images", dest="data_images", type=int, default=4)
    p.add_argument("--precision", choices=("auto", "fp32", "amp"), default="auto",
                   help="our fast paths: bf16 where measured faster on a CPU with native bf16 "
                        "(auto), never (fp32) or always (amp)")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    args = p.parse_args(argv)
    try:
        import mmseg  # noqa: F401
    except ImportError:
        raise UserError("mmsegmentation is not installed here; install it in a separate virtualenv (pip "
                        "install mmsegmentation==1.2.2 mmengine mmcv-lite==2.1.0 ftfy regex)") \
            from None
    np.random.seed(0)
    print(cpu_description())
    print(f"host memory, both sides: {keep_freed_memory()} (as train.py runs)")
    results = {}
    for name in args.models:
        results[name] = compare(name, args)
        print_table(name, results[name], args)
    return results


if __name__ == "__main__":
    with user_errors():
        main()
