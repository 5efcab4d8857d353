"""Builds the train / val datasets a config names (``data.dataset``)."""
from common import cityscapes
from common.errors import UserError
from common.transforms import EvalResize, build_train_pipeline

DATASETS = {"cityscapes": cityscapes}


def dataset_module(cfg):
    name = cfg["data"]["dataset"]
    if name not in DATASETS:
        raise UserError(f"dataset {name!r} is not available to this model; use one of "
                        f"{', '.join(DATASETS)}")
    return DATASETS[name]


def class_names(cfg):
    return dataset_module(cfg).CLASSES


def palette(cfg):
    return dataset_module(cfg).PALETTE


def build_train_set(cfg, root):
    data = cfg["data"]
    return dataset_module(cfg).build_dataset(root, data["train_split"],
                                                  pipeline=build_train_pipeline(data))


def build_val_set(cfg, root):
    data = cfg["data"]
    return dataset_module(cfg).build_dataset(root, data["val_split"],
                                                  test_transform=EvalResize(data["test_scale"]))
