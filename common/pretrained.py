"""ImageNet-pretrained backbone weights (``--pretrained``) in torchvision or mmcv format.

Both formats already use mmseg's ResNet key names (``conv1``/``bn1``/``layerN...`` for the
plain stem, ``stem.N`` for mmcv's v1c deep stem); what differs is wrapping (``state_dict``,
``model``), prefixes (``module.``, ``backbone.``) and the classifier (``fc.*`` / ``head.*``),
which is dropped. A stem that does not fit (a torchvision 7x7 stem into mmseg's deep-stem
backbone) is reported in the log; a file that leaves any tensor of the residual stages
(``layer1``..``layer4``) unfilled is refused: training on with part of the backbone random
would look like a pretrained run and is not one.
"""
from dataclasses import dataclass, field

import torch

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
    loaded = load_file(path, what="pretrained file")
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise UserError(f"pretrained file {path} is not a state_dict (a mapping of tensor "
                        "names); pass ImageNet ResNet weights saved with torch.save")
    state, fmt = normalise_imagenet_keys(loaded)
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"pretrained file {path} holds values that are not tensors; pass "
                        "ImageNet ResNet weights saved with torch.save")
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
    def stage_tensor(key):  # BN step counters are absent from older torchvision files
        return key.startswith("layer") and not key.endswith("num_batches_tracked")

    unfilled = [k for k in report.missing if stage_tensor(k)]
    if unfilled:
        stages = sum(1 for k in own if stage_tensor(k))
        why = "of another shape" if unfilled[0] in report.shape_mismatch else "missing"
        raise UserError(f"pretrained file {path} fills only {stages - len(unfilled)} of the "
                        f"{stages} residual-stage tensors of this backbone (e.g. {unfilled[0]} "
                        f"is {why}); pass complete ImageNet weights of a ResNet of the same "
                        "depth")
    backbone.load_state_dict(usable, strict=False)
    return report
