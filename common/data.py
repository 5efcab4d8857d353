"""From a dataset root to the train / val datasets: the splits a run needs, the start-up
check, and the mmseg pipelines. The dataset module (``common.cityscapes`` or PSPNet's ``voc``)
lists the pairs; train.py hands the listing here."""
import os
from dataclasses import dataclass

from common.config import config_path_value
from common import decoded, distributed
from common.data_check import SHOWN, check_dataset
from common.datasets import SegDataset, image_size, read_image, read_label
from common.errors import UserError
from common.transforms import EvalResize, TTAResize, build_train_pipeline


@dataclass(frozen=True)
class Datasets:
    root: str
    train: SegDataset = None      # None for --eval-only
    val: SegDataset = None        # None with --no-validate


def dataset_root(data_path, cfg, model_dir):
    """``--data_path``, else the config's ``paths.cityscapes_root`` (the seed ICNet's key),
    else None: the caller then uses the synthetic dataset."""
    if data_path:
        return os.path.abspath(data_path)
    return config_path_value(cfg, "cityscapes_root", model_dir)


def synthetic(root, log, name):
    """Say that the run uses the synthetic dataset at ``root``; return ``root``."""
    log(f"No --data_path: using the synthetic {name} dataset at {root} (pass "
        f"--data_path=/path/to/{name.lower()} for real data)")
    return root


def needed_splits(args, cfg):
    """The splits this run reads: train (unless --eval-only) and val (unless --no-validate)."""
    data = cfg["data"]
    if getattr(args, "format_only", False):  # the submission lists its split's frames itself
        return []
    if args.check_data or args.prepare_data:
        return [data["train_split"], data["val_split"]]
    return ([] if args.eval_only else [data["train_split"]]) + (
        [data["val_split"]] if args.eval_only or not args.no_validate else [])


def build_datasets(args, cfg, rt, root, listing):
    """Check the listed splits (all problems reported at once), then build the datasets;
    with ``--check-data`` report and return None, with ``--prepare-data`` fill the decoded-data
    cache (:mod:`common.decoded`) and return None. With several processes rank 0 decodes and
    checks every file and tells the others the outcome (one check per run, not one per rank)."""
    data, log = cfg["data"], rt.log
    workers = max(data["num_workers"], 1)
    problem = None
    if rt.dist.is_main:
        try:
            check_dataset(cfg, root, listing, log, workers, use_cache=not args.check_data,
                          shown=None if args.check_data else SHOWN)
        except UserError as exc:
            problem = str(exc)
    problem = distributed.broadcast_object(problem)
    if problem is not None:
        raise UserError(problem)
    checked = {split: pairs for split, (pairs, _) in listing.items()}
    if args.check_data:
        log(f"--check-data: {sum(map(len, checked.values()))} image/label pairs of "
            f"{' and '.join(checked)} in {root} checked, no problems")
        return None
    if args.prepare_data:
        if rt.dist.is_main:
            prepare_decoded(checked, workers, log)
        return None
    train = val = None
    if data["train_split"] in checked:
        train = build_train_set(cfg, checked[data["train_split"]])
    if data["val_split"] in checked:
        val = build_val_set(cfg, checked[data["val_split"]])
    return Datasets(root, train, val)


def prepare_decoded(checked, workers, log):
    """``--prepare-data``: every image and label of the checked splits into the cache."""
    files, sizes = [], []
    for pairs in checked.values():
        for image, label in pairs:
            w, h = image_size(image, "image")
            files += [(image, read_image), (label, read_label)]
            sizes += [w * h * 3, w * h]
    count, written = decoded.prepare(files, sizes, workers, log)
    log(f"--prepare-data: {count} files decoded ({written / 1e9:.2f} GB) into "
        f"{decoded.decoded_dir()}; training reads them from now on (a changed source file is "
        "decoded from the file again)")


def build_train_set(cfg, pairs):
    """Training samples from checked pairs (listed and fully checked, so no second listing or
    header pass here), transformed in the loader workers, or only decoded when
    ``data.device_augment`` moves the transforms to the device."""
    data = cfg["data"]
    pipeline = None if data["device_augment"] else build_train_pipeline(data)
    return SegDataset(pairs, pipeline, check_sizes=False)


def build_val_set(cfg, pairs):
    """Evaluation samples (checked pairs) at the test scale, or for TTA at each ratio of their
    own size."""
    data, ev = cfg["data"], cfg["eval"]
    transform = TTAResize(ev["tta_ratios"]) if ev["tta"] else EvalResize(data["test_scale"])
    return SegDataset(pairs, test_transform=transform, check_sizes=False)
