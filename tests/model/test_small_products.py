"""The decoder's few-row products: same numbers as the plain forms, gradients when training."""

import pytest
import torch
import torch.nn.functional as F

from napari_seem.model.decoder import by_pixel
from napari_seem.model.layers import Linear, linear


@pytest.mark.parametrize("rows", [1, 2, 3, 6, 7, 12])
def test_linear_matches_f_linear(rows):
    torch.manual_seed(rows)
    x, weight, bias = torch.randn(rows, 1, 64), torch.randn(96, 64), torch.randn(96)
    with torch.no_grad():
        ours = linear(x, weight, bias)
    assert ours.shape == (rows, 1, 96) and ours.is_contiguous()
    torch.testing.assert_close(ours, F.linear(x, weight, bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(linear(x, weight), F.linear(x, weight), atol=1e-5, rtol=1e-5)


def test_linear_module_trains():
    layer = Linear(8, 4)
    layer(torch.randn(3, 8)).sum().backward()
    assert layer.weight.grad is not None and layer.bias.grad is not None


def test_by_pixel_is_a_view_of_channels_last_maps():
    feature_map = torch.randn(2, 5, 3, 4).contiguous(memory_format=torch.channels_last)
    flat = by_pixel(feature_map)
    assert flat.shape == (2, 12, 5) and flat.data_ptr() == feature_map.data_ptr()
    assert torch.equal(flat[1, 4 * 2 + 3], feature_map[1, :, 2, 3])
