"""The loss computes F.cross_entropy's function: per-pixel values and gradients, ignored
pixels, per-pixel weights, bf16 and channels_last logits, resized from the heads' size."""
import pytest
import torch
import torch.nn.functional as F

from common.losses import PixelCrossEntropy, cross_entropy, heads_cross_entropy
from common.layers import resize


def labelled(shape=(2, 5, 6, 7), ignore=255):
    torch.manual_seed(0)
    n, c, h, w = shape
    label = torch.randint(0, c, (n, h, w))
    label[:, 0, :3] = ignore
    return torch.randn(shape), label


def test_gradcheck_in_float64():
    logits, label = labelled()
    logits = logits.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda x: PixelCrossEntropy.apply(x, label, 255), (logits,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_values_and_gradients_are_f_cross_entropys(dtype, channels_last):
    logits, label = labelled()
    logits = logits.to(dtype)
    if channels_last:
        logits = logits.contiguous(memory_format=torch.channels_last)
    weights = torch.rand(label.shape)
    ours = logits.clone().requires_grad_()
    reference = logits.clone().requires_grad_()
    loss = PixelCrossEntropy.apply(ours, label, 255)
    expected = F.cross_entropy(reference.float(), label, ignore_index=255, reduction="none")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, expected, rtol=1e-6, atol=1e-6)
    assert torch.all(loss[label == 255] == 0)
    (loss * weights).mean().backward()
    (expected * weights).mean().backward()
    assert ours.grad.dtype == dtype
    tolerance = 1e-2 if dtype == torch.bfloat16 else 1e-6
    torch.testing.assert_close(ours.grad.float(), reference.grad.float(), rtol=tolerance,
                               atol=tolerance * reference.grad.abs().max().item())


def test_heads_are_resized_in_float32_then_weighted():
    torch.manual_seed(0)
    label = torch.randint(0, 4, (2, 16, 16))
    heads = {"decode": torch.randn(2, 4, 4, 4).bfloat16(), "aux": torch.randn(2, 4, 8, 8)}
    total, terms = heads_cross_entropy(heads, label, {"decode": 1.0, "aux": 0.4})
    expected = {head: F.cross_entropy(resize(x.float(), (16, 16)), label, ignore_index=255)
                for head, x in heads.items()}
    for head in heads:
        torch.testing.assert_close(terms[f"{head}.loss_ce"], expected[head])
    torch.testing.assert_close(total, expected["decode"] + 0.4 * expected["aux"])
    same_size = torch.randn(2, 4, 16, 16)
    torch.testing.assert_close(cross_entropy(same_size, label),
                               F.cross_entropy(same_size, label, ignore_index=255))
