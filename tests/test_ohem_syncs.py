"""OHEM (BiSeNetV2/ohem.py) runs at every iteration for every OHEM head: it must not make the
host wait for the device. A sync detector (a TorchFunctionMode) fails on every call that
synchronises on an accelerator (``.item()``, ``bool()`` / ``int()`` / ``float()`` of a tensor,
``.tolist()``, ``nonzero``, ``unique``, boolean-mask indexing, ...); the weights stay bit for bit
those of the straightforward host-sorting implementation (mmseg's ``OHEMPixelSampler``), kept
below as the reference."""
import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from BiSeNetV2.ohem import ohem_weights
from common.losses import cross_entropy

# Calls that make the host wait for the device (or, like nonzero / unique / a boolean mask,
# produce a shape that depends on the data, which needs the data on the host first).
SYNCING = {"item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__",
           "__complex__", "__format__", "__repr__", "is_nonzero", "equal", "allclose",
           "nonzero", "argwhere", "unique", "unique_consecutive", "_unique", "_unique2",
           "masked_select", "bincount"}
INDEXING = {"__getitem__", "__setitem__", "index", "index_put", "index_put_"}


class HostSync(AssertionError):
    pass


def _has_mask(index):
    if isinstance(index, torch.Tensor):
        return index.dtype in (torch.bool, torch.uint8)
    if isinstance(index, (tuple, list)):
        return any(_has_mask(i) for i in index)
    return False


def syncing(func, args, kwargs):
    """Why ``func(*args, **kwargs)`` synchronises with the host, or None."""
    name = getattr(func, "__name__", "")
    if name in SYNCING:
        return name
    if name in INDEXING and any(_has_mask(a) for a in args[1:]):
        return f"{name} with a boolean mask"
    if name == "where" and len(args) + len(kwargs) == 1:
        return "where(condition) (nonzero)"
    if name == "repeat_interleave" and kwargs.get("output_size") is None \
            and any(isinstance(a, torch.Tensor) for a in args[1:]):
        return "repeat_interleave without output_size"
    return None


class SyncDetector(TorchFunctionMode):
    """Raises :class:`HostSync` at the first synchronising call inside the ``with`` block."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        why = syncing(func, args, kwargs)
        if why is not None:
            raise HostSync(f"host-device synchronisation: {why}")
        return func(*args, **kwargs)


def reference_ohem_weights(logits, label, ignore_index=255, thresh=0.7, min_kept=10000):
    """The straightforward version (ohem.py before it was made sync-free): sort the labelled
    pixels' true-class probabilities on the host and threshold at
    ``max(sorted[min(min_kept * batch, labelled - 1)], thresh)``."""
    valid = label != ignore_index
    weights = torch.zeros(label.shape, dtype=torch.float32, device=label.device)
    prob = F.softmax(logits.float(), dim=1)
    target = torch.where(valid, label, torch.zeros_like(label))
    true_prob = prob.gather(1, target.unsqueeze(1)).squeeze(1)[valid]
    if true_prob.numel() == 0:
        return weights
    kept = min(min_kept * label.shape[0], true_prob.numel() - 1)
    threshold = max(true_prob.sort().values[kept].item(), thresh)
    weights[valid] = (true_prob < threshold).float()
    return weights


# --- the detector itself catches what it must, and lets the rest through ---------------------

def _bool_of(x):
    if x.sum() > 0:
        return 1
    return 0


def _mask_assign(x):
    x[x > 0] = 0


CAUGHT = {
    "item": lambda x: x.sum().item(),
    "bool": lambda x: bool(x.sum() > 0),
    "if": _bool_of,
    "int": lambda x: int(x.sum()),
    "float": lambda x: float(x.sum()),
    "index": lambda x: list(range(10))[x.argmax()],
    "tolist": lambda x: x.tolist(),
    "mask getitem": lambda x: x[x > 0],
    "mask setitem": _mask_assign,
    "nonzero": lambda x: torch.nonzero(x),
    "method nonzero": lambda x: x.nonzero(),
    "where(cond)": lambda x: torch.where(x > 0),
    "unique": lambda x: torch.unique(x),
    "masked_select": lambda x: x.masked_select(x > 0),
}


@pytest.mark.parametrize("name", sorted(CAUGHT))
def test_detector_catches(name):
    x = torch.randn(4, 5)
    with pytest.raises(HostSync), SyncDetector():
        CAUGHT[name](x)


def test_detector_lets_device_side_code_through():
    x = torch.randn(4, 5)
    with SyncDetector():
        y = torch.where(x > 0, x, 0.0).sum() + x.flatten().topk(3, largest=False).values[0]
        y = y + x.flatten().gather(0, (x > 0).sum().clamp(0, 19).view(1))
        x[:, 1] = 0
    assert y.shape == (1,)


# --- ohem_weights under the detector ----------------------------------------------------------

def _case(seed, batch=2, classes=5, h=6, w=7, ignored=0.3, nan=False, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, classes, h, w, generator=g).to(dtype)
    label = torch.randint(0, classes, (batch, h, w), generator=g)
    label[torch.rand(batch, h, w, generator=g) < ignored] = 255
    if nan:
        logits[0, :, 0, :3] = float("nan")
    return logits, label


CASES = {  # name: (logits, label, thresh, min_kept)
    "typical": (*_case(0), 0.7, 10),
    "all ignored": (*_case(1, ignored=1.0), 0.7, 10),
    "fewer labelled than min_kept": (*_case(2, ignored=0.9), 0.7, 50),
    "min_kept x batch over all pixels": (*_case(3, ignored=0.0), 0.7, 1000),
    "nothing ignored, low thresh": (*_case(4, ignored=0.0), 0.05, 3),
    "thresh 1": (*_case(5), 1.0, 1),
    "batch 1, one pixel": (*_case(6, batch=1, h=1, w=1, ignored=0.0), 0.7, 10),
    "empty": (*_case(7, h=0), 0.7, 10),
    "nan logits": (*_case(8, nan=True, ignored=0.0), 0.7, 10),
    "nan at the kept-th (none kept)": (*_case(8, nan=True, ignored=0.0), 0.7, 45),
    "bf16 logits": (*_case(9, dtype=torch.bfloat16), 0.7, 5),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_ohem_weights_make_no_host_sync(name):
    logits, label, thresh, min_kept = CASES[name]
    with SyncDetector():
        weights = ohem_weights(logits, label, 255, thresh, min_kept)
    expected = reference_ohem_weights(logits, label, 255, thresh, min_kept)
    assert weights.dtype == expected.dtype and weights.device == expected.device
    assert torch.equal(weights, expected)


def test_ohem_loss_term_makes_no_host_sync():
    """The OHEM head's loss as BiSeNetV2/train.py computes it, forward and backward."""
    logits, label = _case(10, ignored=0.2)
    logits.requires_grad_(True)
    with SyncDetector():
        loss = cross_entropy(logits, label, 255, ohem_weights(logits, label, 255, 0.7, 10))
        loss.backward()
    assert logits.grad is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_ohem_weights_make_no_cuda_sync():
    """On a GPU, torch's own sync detector (``set_sync_debug_mode("error")``) agrees."""
    logits, label = _case(11)
    logits, label = logits.cuda(), label.cuda()
    ohem_weights(logits, label, 255, 0.7, 10)  # warm-up: lazy initialisation may sync
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        weights = ohem_weights(logits, label, 255, 0.7, 10)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    expected = reference_ohem_weights(logits.cpu(), label.cpu(), 255, 0.7, 10)
    assert torch.equal(weights.cpu(), expected)


# --- same weights as the reference, bit for bit -----------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_same_weights_as_reference(seed):
    g = torch.Generator().manual_seed(1000 + seed)
    batch = int(torch.randint(1, 4, (1,), generator=g))
    classes = int(torch.randint(2, 20, (1,), generator=g))
    h, w = (int(v) for v in torch.randint(1, 24, (2,), generator=g))
    logits = torch.randn(batch, classes, h, w, generator=g) * 3
    if seed % 3 == 0:  # coarse logits: many equal probabilities (ties at the threshold)
        logits = logits.round()
    label = torch.randint(0, classes, (batch, h, w), generator=g)
    ignored = [0.0, 0.2, 0.6, 0.95, 1.0][seed % 5]
    label[torch.rand(batch, h, w, generator=g) < ignored] = 255
    if seed % 7 == 0:
        logits[:, :, 0, 0] = float("nan")  # a diverged pixel per image
    min_kept = int(torch.randint(1, max(2, h * w), (1,), generator=g))
    probs = F.softmax(logits, 1).flatten()
    threshes = [0.7, 1.0, 0.01]
    finite = probs[~probs.isnan()]
    if finite.numel():  # a thresh exactly on a probability (float32 vs float64 compare)
        threshes.append(float(finite[seed % finite.numel()]))
    for thresh in threshes:
        got = ohem_weights(logits, label, 255, thresh, min_kept)
        want = reference_ohem_weights(logits, label, 255, thresh, min_kept)
        assert torch.equal(got, want), (seed, thresh, min_kept)
