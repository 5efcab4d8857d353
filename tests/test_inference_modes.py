"""Slide and TTA inference (in process): equal to whole-image inference where they must be,
and mmseg's grid and scale rules."""

import numpy as np
import pytest
import torch
from torch import nn

from common.inference import InferenceMode, predict_logits, slide_logits
from common.transforms import TTAResize
from conftest import MODELS, NETWORKS


class PerPixel(nn.Module):
    """A 1x1 convolution: each output pixel depends on its own input pixel only."""

    def __init__(self, classes=5):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, classes, 1)

    def forward(self, x):
        return self.conv(x)


class Constant(nn.Module):
    """Logits that ignore the input entirely."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.5, 2.0, -1.0]))

    def forward(self, x):
        return self.bias.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[-2:])


def image(h, w, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, h, w),
                                                                 dtype=np.uint8))


@pytest.mark.parametrize("crop,stride", [((32, 32), (20, 20)), ((64, 48), (7, 13)),
                                         ((100, 100), (50, 50))])
def test_slide_equals_whole_for_a_context_free_model(crop, stride):
    model, img = PerPixel().eval(), image(70, 53)
    whole = predict_logits(model, img, (70, 53))
    slide = predict_logits(model, img, (70, 53), mode=InferenceMode("slide", crop, stride))
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)


def test_slide_grid_counts_each_pixel_like_mmseg():
    counter = lambda x: torch.ones(x.shape[0], 1, *x.shape[-2:])  # noqa: E731
    calls = []

    def model(x):
        calls.append(tuple(x.shape[-2:]))
        return counter(x)
    out = slide_logits(model, torch.zeros(1, 3, 70, 53), (32, 32), (20, 20))
    # mmseg: grids = max(size - crop + stride - 1, 0) // stride + 1 -> 3 x 3, all full crops
    assert calls == [(32, 32)] * 9
    torch.testing.assert_close(out, torch.ones(1, 1, 70, 53))


def test_tta_equals_whole_where_it_must():
    img = image(40, 60)
    per_pixel = PerPixel().eval()
    whole = predict_logits(per_pixel, img, (40, 60)).softmax(1)
    one_scale = InferenceMode(tta=True, ratios=(1.0,), flip=True)
    tta = predict_logits(per_pixel, [img], (40, 60), mode=one_scale)  # ratio 1.0 = as is
    torch.testing.assert_close(tta, whole, rtol=1e-5, atol=1e-6)
    constant = Constant().eval()
    scaled = [torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))) for a in
              TTAResize()(img.permute(1, 2, 0).numpy(), None)[0]]
    for base in ("whole", "slide"):
        mode = InferenceMode(base, (16, 16), (10, 10), tta=True)
        probs = predict_logits(constant, scaled, (40, 60), mode=mode)
        expected = constant.bias.detach().softmax(0).view(1, 3, 1, 1).expand(1, 3, 40, 60)
        torch.testing.assert_close(probs, expected)


def test_tta_scales_follow_mmseg_resize():
    scaled, _ = TTAResize()(np.zeros((1024, 2048, 3), np.uint8), None)
    assert [a.shape[:2] for a in scaled] == [(512, 1024), (768, 1536), (1024, 2048),
                                             (1280, 2560), (1536, 3072), (1792, 3584)]
    odd, _ = TTAResize((0.75,))(np.zeros((375, 500, 3), np.uint8), None)
    assert odd[0].shape[:2] == (281, 375)  # int(x * 0.75 + 0.5)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_slide_with_the_image_as_crop_is_whole_for_every_network(model_name):
    torch.manual_seed(0)
    net = NETWORKS[model_name]().eval()
    img = image(64, 96)
    whole = predict_logits(net, img, (64, 96))
    slide = predict_logits(net, img, (64, 96), mode=InferenceMode("slide", (64, 96), (32, 32)))
    torch.testing.assert_close(slide, whole, rtol=0, atol=0)
