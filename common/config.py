"""YAML recipes: one file per recipe, optional ``_base_: other.yaml`` or a list of files
(paths relative to the file, merged in order) that it overrides section by section.

Every key must be known: the keys below (:data:`DEFAULTS`), the network class's arguments for
the ``model`` section, and the keys a model's train.py adds for itself (``own``: for example
BiSeNetV2's per-head hard-pixel mining and its head learning-rate factor), which that train.py
validates. An unknown key or a value of the wrong type or out of range is a :class:`UserError`
naming it. Inference (evaluation of a stored config, export, demo) does not read ``loss`` or
``optim``, so without ``own`` those two sections accept the training script's own keys.
"""
import copy
import inspect
import os

import yaml

from common.errors import UserError

DEFAULTS = {
    "model": {},
    "data": {
        "num_classes": 19,
        "ignore_index": 255,
        "train_split": "train",
        "val_split": "val",
        "scale": [2048, 1024],          # RandomResize base scale (w, h)
        "ratio_range": [0.5, 2.0],
        "crop_size": [1024, 1024],      # (h, w)
        "cat_max_ratio": 0.75,
        "flip_prob": 0.5,
        "photometric": True,
        "pad_to_crop": False,
        "device_augment": False,        # run the train transforms on the device (batch)
        "test_scale": [2048, 1024],     # (w, h) fit for evaluation; null = keep size
        "batch_size": 4,                # per device
        "num_workers": 4,               # per device
    },
    "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005},
    "schedule": {"max_iters": 160000, "warmup_iters": 1000, "warmup_ratio": 0.1, "power": 0.9,
                 "eta_min": 0.0001,
                 "warmup_epochs": 0.0},  # > 0: warm-up length in epochs (overrides warmup_iters)
    "loss": {"weights": {"decode": 1.0}},  # CE weight per head (decode, aux / aux_0, ...)
    # evaluation: whole-image or sliding-window inference, optional multi-scale + flip TTA
    "eval": {"mode": "whole", "crop_size": [1024, 1024], "stride": [768, 768], "tta": False,
             "tta_ratios": [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], "tta_flip": True,
             "fast": True},  # evaluate a BN-folded channels_last copy (same function)
    # the seed ICNet's path keys; relative paths are relative to the model directory, and
    # --data_path / --work-dir / --checkpoint override them
    "paths": {"cityscapes_root": None, "ckpt_dir": None, "ckpt_path": None},
    "runtime": {
        "log_interval": 50,
        "eval_interval": 16000,
        "checkpoint_interval": 16000,
        "max_keep_ckpts": 0,            # 0 = keep all
        "seed": 0,
        "amp": False,
        "opt_level": "O0",
        "loss_scale": "dynamic",
        "deterministic": False,
        "perf_warmup_iters": 5,         # iterations left out of the images/s figure
        # flags that change a run: recorded in every checkpoint, compared across ranks
        "channels_last": False,         # --channels-last: NHWC activations
        "sync_bn": False,               # --sync_bn: SyncBatchNorm across processes
        "compile": False,               # --compile: torch.compile the training model
        "apex": False,                  # --apex: apex amp instead of torch.amp
        "nan_policy": "stop",           # --nan-policy: non-finite gradients stop or skip
    },
}

POSITIVE = {"data.num_classes", "data.batch_size", "optim.lr", "schedule.max_iters",
            "schedule.power", "runtime.log_interval", "runtime.eval_interval",
            "runtime.checkpoint_interval"}
NON_NEGATIVE = {"data.num_workers", "optim.momentum", "optim.weight_decay",
                "schedule.warmup_iters", "schedule.eta_min", "schedule.warmup_epochs",
                "runtime.max_keep_ckpts",
                "runtime.perf_warmup_iters", "data.flip_prob"}
CHOICES = {"runtime.opt_level": ("O0", "O1", "O2"), "eval.mode": ("whole", "slide"),
           "runtime.nan_policy": ("stop", "skip")}
INFERENCE_LENIENT = ("loss", "optim")  # sections only training reads
POSITIVE_PAIRS = {"eval.crop_size", "eval.stride", "data.crop_size", "data.scale",
                  "data.test_scale", "data.ratio_range"}
FRACTIONS = {"data.flip_prob", "data.cat_max_ratio", "schedule.warmup_ratio"}  # within [0, 1]
NULLABLE = {"data.test_scale", "paths.cityscapes_root", "paths.ckpt_dir", "paths.ckpt_path"}


def _type_ok(default, value):
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, list):
        return isinstance(value, list) and len(value) == len(default)
    return isinstance(value, type(default))


def _check_value(dotted, default, value):
    if value is None and dotted in NULLABLE:
        return
    if dotted.startswith("paths."):
        if value is not None and not isinstance(value, str):
            raise UserError(f"config key {dotted} must be a path or null, got {value!r}")
        return
    if dotted == "runtime.loss_scale":
        if value != "dynamic" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                   or value <= 0):
            raise UserError(f"config key {dotted} must be 'dynamic' or a positive number, "
                            f"got {value!r}")
        return
    if dotted == "eval.tta_ratios":
        if not (isinstance(value, list) and value and all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in value)):
            raise UserError(f"config key {dotted} must be a non-empty list of positive numbers, "
                            f"got {value!r}")
        return
    if not _type_ok(default, value):
        raise UserError(f"config key {dotted} must be {type(default).__name__}"
                        + (f" of length {len(default)}" if isinstance(default, list) else "")
                        + f", got {value!r}")
    if dotted in POSITIVE and not value > 0:
        raise UserError(f"config key {dotted} must be > 0, got {value}")
    if dotted in POSITIVE_PAIRS:
        kind = (int, float) if dotted == "data.ratio_range" else int
        if not all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in value):
            raise UserError(f"config key {dotted} must be two positive "
                            f"{'numbers' if kind != int else 'integers'}, got {value}")
    if dotted in FRACTIONS and not 0 <= value <= 1:
        raise UserError(f"config key {dotted} must be within [0, 1], got {value}")
    if dotted in NON_NEGATIVE and value < 0:
        raise UserError(f"config key {dotted} must be >= 0, got {value}")
    if dotted in CHOICES and value not in CHOICES[dotted]:
        raise UserError(f"config key {dotted} must be one of {', '.join(CHOICES[dotted])}, "
                        f"got {value!r}")


def _check_loss_weights(value):
    """``loss.weights``: ``{head: weight >= 0}``."""
    if not (isinstance(value, dict) and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
            for w in value.values())):
        raise UserError(f"config key loss.weights must map head names to weights >= 0, got "
                        f"{value!r}")


def _read_yaml(path, seen=(), included_by=None):
    """The mapping of a YAML recipe with its ``_base_`` files merged in (``included_by``: the
    file whose ``_base_`` names ``path``, for the error message)."""
    where = f"_base_ {path} (named in {included_by})" if included_by else f"config {path}"
    if not os.path.isfile(path):
        raise UserError(f"{where} " + ("is not a file" if os.path.exists(path) else
                                        "does not exist") +
                        "; pass one of the model's configs/*.yaml")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        data = yaml.safe_load(text)
    except UnicodeDecodeError:
        raise UserError(f"{where} is not a text file (not UTF-8); pass a YAML recipe") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{where} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        raise UserError(f"{where} is empty; write the recipe into it or pass another config "
                        "(an empty file would silently train the defaults)")
    if not isinstance(data, dict):
        raise UserError(f"{where} must be a mapping of sections (section: {{key: value}}), "
                        f"not a {type(data).__name__}")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not (isinstance(bases, list) and bases and all(isinstance(b, str) for b in bases)):
        raise UserError(f"{where}: _base_ must be a file name or a list of file names, got "
                        f"{bases!r}")
    merged = {}
    chain = seen + (os.path.abspath(path),)
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), base)
        if os.path.abspath(base_path) in chain:
            raise UserError(f"{where} includes itself through _base_ ({base}); remove the cycle")
        _merge_into(merged, _read_yaml(base_path, chain, path))
    return _merge_into(merged, data)


def _merge_into(target, overrides):
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(target.get(section), dict):
            target[section] = {**target[section], **values}
        else:
            target[section] = values
    return target


def set_dotted(cfg, dotted, value):
    """Set ``section.key`` (validated later by :func:`validate`)."""
    section, _, key = dotted.partition(".")
    if not key or section not in cfg:
        raise UserError(f"config key {dotted!r} is unknown; use section.key with a section of "
                        f"{', '.join(cfg)}")
    cfg[section][key] = value


def schema(own=None):
    """The known keys: :data:`DEFAULTS` plus a train.py's ``own`` ``{section: {key: default}}``."""
    known = copy.deepcopy(DEFAULTS)
    for section, keys in (own or {}).items():
        known.setdefault(section, {}).update(keys)
    return known


def validate(cfg, model=None, own=None):
    """Check every key of ``cfg``: the ``model`` section against the network class's
    arguments, the rest against :func:`schema` (``own`` keys with a ``None`` or mapping
    default are left to the train.py that added them). ``own=None`` means inference."""
    known = schema(own)
    for section, values in cfg.items():
        if section not in known:
            raise UserError(f"config section {section!r} is unknown; sections are "
                            f"{', '.join(known)}")
        if not isinstance(values, dict):
            raise UserError(f"config section {section!r} must be a mapping")
        if section == "model":
            if model is not None:
                allowed = inspect.signature(model).parameters
                for key in values:
                    if key not in allowed:
                        raise UserError(f"config key model.{key} is unknown; the model takes "
                                        f"{', '.join(allowed)}")
                _check_num_classes(cfg, allowed)
            continue
        for key, value in values.items():
            if key not in known[section]:
                if own is None and section in INFERENCE_LENIENT:
                    continue
                raise UserError(f"config key {section}.{key} is unknown; {section} takes "
                                f"{', '.join(known[section])}")
            if f"{section}.{key}" == "loss.weights":
                _check_loss_weights(value)
            elif known[section][key] is not None and not isinstance(known[section][key], dict):
                _check_value(f"{section}.{key}", known[section][key], value)
    _check_relations(cfg)
    return cfg


def _check_num_classes(cfg, model_parameters):
    """The labels' classes (data.num_classes: metrics, per-class tables) are the network's
    output channels (model.num_classes, else the network's default)."""
    default = model_parameters.get("num_classes")
    if default is None or "data" not in cfg:
        return
    network = cfg["model"].get("num_classes", default.default)
    data = cfg["data"].get("num_classes", DEFAULTS["data"]["num_classes"])
    if network != data:
        raise UserError(f"config key data.num_classes is {data} but the network outputs "
                        f"model.num_classes = {network} classes; set both to the dataset's "
                        "number of classes")


def _check_relations(cfg):
    """Values that are each valid but not together."""
    low, high = cfg.get("data", {}).get("ratio_range", (1, 1))
    if low > high:
        raise UserError(f"config key data.ratio_range must be [low, high] with low <= high, got "
                        f"{[low, high]}")
    data = cfg.get("data", {})
    ignore, classes = data.get("ignore_index", 255), data.get("num_classes", 1)
    if not 0 <= ignore <= 255 or classes > 255:
        raise UserError(f"config key data.ignore_index must be in 0..255 and "
                        f"data.num_classes at most 255 (labels are 8-bit), got ignore_index "
                        f"{ignore} with num_classes {classes}")
    evaluation = cfg.get("eval", {})
    crop, stride = evaluation.get("crop_size"), evaluation.get("stride")
    slide = evaluation.get("mode") == "slide"
    if slide and crop and stride and any(s > c for s, c in zip(stride, crop)):
        raise UserError(f"slide stride {stride} is larger than the slide crop {crop}: pixels "
                        "between windows would get no prediction; use a stride <= the crop "
                        "(eval.stride / --slide-stride)")


def config_path_value(cfg, key, base_dir):
    """``paths.<key>`` as an absolute path (relative to ``base_dir``), or None."""
    value = cfg.get("paths", {}).get(key)
    if not value:
        return None
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(base_dir, value))


def load_config(path, overrides=(), model=None, own=None):
    """Defaults <- YAML (with _base_) <- ``overrides`` (``[(dotted_key, value), ...]``),
    validated (:func:`validate`)."""
    cfg = schema(own)
    for section, values in _read_yaml(path).items():
        if section in cfg and isinstance(values, dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    validate(cfg, model, own)
    for dotted, value in overrides:
        set_dotted(cfg, dotted, value)
    return validate(cfg, model, own)


def parse_cfg_option(text):
    """``section.key=value`` with a YAML value (``data.crop_size=[64,64]``)."""
    key, sep, raw = text.partition("=")
    if not sep:
        raise UserError(f"--cfg-options item {text!r} must look like section.key=value")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError:
        raise UserError(f"--cfg-options value in {text!r} is not valid YAML") from None
