"""ImageNet-pretrained backbone weights (``--pretrained``) in torchvision or mmcv format.

Both formats already use mmseg's ResNet key names (``conv1``/``bn1``/``layerN...`` for the
plain stem, ``stem.N`` for mmcv's v1c deep stem); what differs is wrapping (``state_dict``,
``model``), prefixes (``module.``, ``backbone.``) and the classifier (``fc.*`` / ``head.*``),
which is dropped. Keys that do not fit (e.g. a torchvision 7x7 stem into a deep-stem backbone)
are reported, never silently ignored.
"""
from dataclasses import dataclass, field

from common.checkpoint import load_file
from common.errors import UserError

PREFIXES = ("module.", "backbone.")
CLASSIFIER = ("fc.", "head.")


@dataclass
class LoadReport:
    source_format: str
    loaded: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unused: list = field(default_factory=list)
    shape_mismatch: list = field(default_factory=list)

    def summary(self):
        return (f"pretrained ({self.source_format} format): loaded {len(self.loaded)} tensors; "
                f"not in file: {len(self.missing)}"
                + (f" (e.g. {', '.join(self.missing[:3])})" if self.missing else "")
                + f"; unused from file: {len(self.unused)}"
                + (f" (e.g. {', '.join(self.unused[:3])})" if self.unused else "")
                + f"; shape mismatch: {len(self.shape_mismatch)}"
                + (f" (e.g. {', '.join(self.shape_mismatch[:3])})" if self.shape_mismatch else ""))


def normalise_imagenet_keys(state):
    """Strip wrappers and prefixes, drop the classifier; return (state, format name)."""
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
    out = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix):]
        if key.startswith(CLASSIFIER):
            continue
        out[key] = value
    fmt = "mmcv" if any(k.startswith("stem.") for k in out) else "torchvision"
    return out, fmt


def load_pretrained_backbone(backbone, path):
    """Copy matching ImageNet weights into ``backbone``; return a :class:`LoadReport`."""
    state, fmt = normalise_imagenet_keys(load_file(path, what="pretrained file"))
    own = backbone.state_dict()
    report = LoadReport(fmt)
    usable = {}
    for key, value in state.items():
        if key not in own:
            report.unused.append(key)
        elif tuple(value.shape) != tuple(own[key].shape):
            report.shape_mismatch.append(key)
        else:
            usable[key] = value
            report.loaded.append(key)
    report.missing = [k for k in own if k not in usable]
    if not report.loaded:
        raise UserError(f"pretrained file {path} has no tensor that fits this backbone; pass "
                        "ImageNet ResNet weights of the same depth")
    backbone.load_state_dict(usable, strict=False)
    return report
