"""Builds the train / val datasets a config names (``data.dataset``), and finds the synthetic
stand-in when no ``--data_path`` is given."""
from common import cityscapes, voc
from common.datasets import SegDataset
from common.errors import UserError
from common.synthetic_cityscapes import ensure_synthetic_cityscapes
from common.synthetic_voc import ensure_synthetic_voc
from common.transforms import EvalResize, TTAResize, build_train_pipeline

DATASETS = {"cityscapes": (cityscapes, ensure_synthetic_cityscapes),
            "voc": (voc, ensure_synthetic_voc)}


def _entry(cfg):
    name = cfg["data"]["dataset"]
    if name not in DATASETS:
        raise UserError(f"dataset {name!r} is not available; use one of {', '.join(DATASETS)}")
    return DATASETS[name]


def dataset_module(cfg):
    return _entry(cfg)[0]


def synthetic_root(cfg):
    """Generate (once) the synthetic dataset of the config's kind; return its root."""
    return _entry(cfg)[1]()


def class_names(cfg):
    return dataset_module(cfg).CLASSES


def build_train_set(cfg, pairs):
    """Training samples from the split's pairs as :func:`common.data_check.check_dataset`
    returns them (listed and fully checked, so no second listing or header pass here),
    transformed in the loader workers, or only decoded when ``data.device_augment`` moves the
    transforms to the device."""
    data = cfg["data"]
    pipeline = None if data["device_augment"] else build_train_pipeline(data)
    return SegDataset(pairs, pipeline, check_sizes=False)


def palette(cfg):
    return dataset_module(cfg).PALETTE


def build_val_set(cfg, pairs):
    """Evaluation samples (checked pairs, as for :func:`build_train_set`) at the test scale,
    or for TTA at each ratio of their own size."""
    data, ev = cfg["data"], cfg["eval"]
    transform = TTAResize(ev["tta_ratios"]) if ev["tta"] else EvalResize(data["test_scale"])
    return SegDataset(pairs, test_transform=transform, check_sizes=False)
