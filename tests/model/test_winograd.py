"""Winograd 3x3 convolution: same outputs as direct convolution, and it follows weight changes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_seem.model import pixel_decoder
from napari_seem.model.pixel_decoder import ConvNormAct
from napari_seem.model.winograd import conv3x3_winograd, winograd_weight


def _relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    return float((ours.double() - reference).abs().max() / reference.abs().max())


@pytest.mark.parametrize("shape", [(1, 16, 8, 8), (2, 24, 13, 17), (1, 8, 37, 5), (1, 32, 70, 66)])
def test_matches_direct_convolution_to_fp32_rounding(shape):
    """Odd sizes (partial last tiles), batches, and more tile rows than one band (37, 70 px)."""
    torch.manual_seed(0)
    x = torch.randn(shape)
    weight = torch.randn(12, shape[1], 3, 3) / (9 * shape[1]) ** 0.5
    bias = torch.randn(12)
    reference = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    ours = conv3x3_winograd(x, winograd_weight(weight), bias)
    direct = F.conv2d(x, weight, bias, padding=1)
    assert ours.shape == reference.shape
    assert ours.is_contiguous(memory_format=torch.channels_last)
    # fp32 rounding: a few 1e-6 of the output range (direct convolution's own error is ~3e-7 to 2e-6
    # depending on the channels); a wrong transform is off by O(1).
    assert _relative_error(direct, reference) < 5e-6
    assert _relative_error(ours, reference) < 5e-6


def test_rejects_filters_of_another_size():
    with pytest.raises(ValueError, match="3x3"):
        winograd_weight(torch.zeros(4, 4, 5, 5))
    with pytest.raises(ValueError, match="input channels"):
        conv3x3_winograd(torch.zeros(1, 3, 8, 8), winograd_weight(torch.zeros(4, 5, 3, 3)))


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(pixel_decoder, "WINOGRAD_MIN_PIXELS", 16)
    monkeypatch.setattr(pixel_decoder, "WINOGRAD_MIN_CHANNELS", 8)


def _conv() -> ConvNormAct:
    torch.manual_seed(1)
    return ConvNormAct(8, 8, kernel_size=3, padding=1, bias=True, norm=nn.GroupNorm(2, 8))


def test_conv_module_uses_new_weights_after_loading(small_threshold):
    """A fine-tuned or newly loaded checkpoint must take effect: cached filters are recomputed."""
    conv = _conv()
    x = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        first = conv(x)
        assert conv._winograd is not None  # the Winograd path ran
        state = {k: v * 2 if k == "weight" else v for k, v in conv.state_dict().items()}
        conv.load_state_dict(state)
        second = conv(x)
        direct = conv.norm(F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert not torch.allclose(first, second, atol=1e-3)
    torch.testing.assert_close(second, direct, atol=1e-5, rtol=1e-5)


def test_training_runs_direct_convolution_with_gradients(small_threshold):
    conv = _conv()
    conv(torch.randn(1, 8, 16, 16)).square().sum().backward()
    assert conv._winograd is None
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
