"""Deterministic weights for the mmseg fidelity fixtures.

Both sides (the one-off generator run with mmseg installed, and the tests run without it) fill a
state_dict from its key names and shapes alone, so the same tensors land in mmseg's model and
ours. Keys are visited in sorted order from one seeded generator.
"""
import math

import torch


def fill_state_dict(shapes, seed=0):
    """Return ``{key: tensor}`` for ``shapes`` (``{key: list_of_ints}``), deterministically."""
    gen = torch.Generator().manual_seed(seed)
    keys = set(shapes)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        prefix, leaf = key.rsplit(".", 1)
        is_norm = f"{prefix}.running_mean" in keys
        if leaf == "num_batches_tracked":
            out[key] = torch.tensor(0, dtype=torch.long)
        elif leaf == "running_var" or (is_norm and leaf == "weight"):
            out[key] = torch.rand(shape, generator=gen) * 0.5 + 0.75
        elif leaf in ("running_mean", "bias"):
            out[key] = torch.randn(shape, generator=gen) * 0.1
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            out[key] = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
    return out


def fixture_input(seed=1, shape=(1, 3, 64, 128)):
    """The normalised input image batch the fixture outputs were produced from."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
