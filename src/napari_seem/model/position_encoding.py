"""Sine positional encoding shared by the pixel decoder and the SEEM decoder."""

from __future__ import annotations

import math

import torch


def sine_position_embedding(
    height: int,
    width: int,
    num_pos_feats: int = 256,
    temperature: float = 10000.0,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised 2D sine/cosine embedding (DETR style, ``normalize=True``, scale 2*pi).

    Returns ``[1, 2*num_pos_feats, height, width]``: the first ``num_pos_feats`` channels encode y,
    the next ``num_pos_feats`` encode x, each with sin/cos interleaved. Depends only on the shape.
    """
    eps = 1e-6
    scale = 2 * math.pi
    ones = torch.ones(1, height, width, device=device, dtype=torch.float32)
    y_embed = ones.cumsum(1, dtype=torch.float32)
    x_embed = ones.cumsum(2, dtype=torch.float32)
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale

    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)

    pos_x = x_embed[:, :, :, None] / dim_t
    pos_y = y_embed[:, :, :, None] / dim_t
    pos_x = torch.stack((pos_x[:, :, :, 0::2].sin(), pos_x[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[:, :, :, 0::2].sin(), pos_y[:, :, :, 1::2].cos()), dim=4).flatten(3)
    pos = torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)
    return pos.to(dtype)


# Wavelengths of the absolute embedding: 2*pi to ~1300 input pixels, i.e. from below an object's size
# to the whole 512-pixel image (DETR's 10000 would spend most channels on wavelengths far longer than
# any image, leaving the match of two positions a flat plateau).
ABSOLUTE_TEMPERATURE = 256.0


def absolute_sine_embedding(
    height: int,
    width: int,
    stride: float,
    num_pos_feats: int,
    offset: tuple[float, float] = (0.0, 0.0),
    temperature: float = ABSOLUTE_TEMPERATURE,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Sine/cosine embedding of *absolute* input-pixel positions (not normalised by the map size).

    Cell ``(i, j)`` of a map with ``stride`` input pixels per cell sits at input pixel
    ``((i + 0.5) * stride, (j + 0.5) * stride)`` plus ``offset`` (y, x); the layout is
    :func:`sine_position_embedding`'s (``[1, 2*num_pos_feats, height, width]``, y then x). Because the
    scale does not depend on the map size, a model trained on crops sees the same embedding
    differences on whole images (and a random ``offset`` lets a crop stand anywhere in one).
    """
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride + offset[0]
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride + offset[1]
    dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_pos_feats)

    def encode(values: torch.Tensor) -> torch.Tensor:  # [n] -> [n, num_pos_feats]
        scaled = values[:, None] / dim_t
        return torch.stack((scaled[:, 0::2].sin(), scaled[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, num_pos_feats)
    pos_x = encode(x)[None, :, :].expand(height, width, num_pos_feats)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1)[None].to(dtype)
