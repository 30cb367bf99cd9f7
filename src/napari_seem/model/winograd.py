"""3x3 convolutions by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, CVPR 2016).

The pixel decoder spends most of its time in 512-channel 3x3 convolutions at strides 4 and 8, which
oneDNN runs directly at close to the CPU's matmul peak. Winograd's algorithm computes each 4x4
output tile from a 6x6 input tile with 36 multiplications per channel pair instead of 144, so the
same outputs take 4x fewer flops; on this project's 2-core CPU a 512-channel convolution at
128x128 drops from 355-375 ms to 155-200 ms (the transforms cost memory traffic). The price is rounding, kept small by the choice of interpolation points: the
error is ~3e-6 of the output's range in fp32, as for direct convolution (~2e-6).

Layout of the computation, for an input ``[H, W, C]`` (channels-last) and ``T`` output tiles::

    V[y, x, T, C] = B^T d B         (input transform, two small GEMMs along rows then columns)
    M[y, x, T, K] = V[y, x] @ U[y, x]   (36 GEMMs; U = G g G^T is computed once per weight)
    Y[T, 4, 4, K] = A^T M A         (output transform)

Rows of tiles are processed in bands so that the transformed tiles stay in cache.
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["TILE", "winograd_weight", "conv3x3_winograd"]

TILE = 4  # output tile side (m); the input tile side is m + 2
_ALPHA = TILE + 2
_BAND = 8  # tile rows per band: ~20 MB of transformed tiles for 512 channels at 128 px width

# F(4x4, 3x3) by the Toom-Cook construction with interpolation points 0, 1, -1, 2, -1/2 and infinity.
# The usual points 0, +-1, +-2 give 3x the rounding error of direct convolution in fp32; with -1/2 in
# place of -2 the error is within 1.5x of it (Barabasz et al., "Error analysis and improving the
# accuracy of Winograd convolution", 2020). B^T and A^T are exact in binary floating point.
_BT = ((1, 3 / 2, -2, -3 / 2, 1, 0),
       (0, -1, -5 / 2, -1 / 2, 1, 0),
       (0, 1, 1 / 2, -5 / 2, 1, 0),
       (0, -1 / 2, -1, 1 / 2, 1, 0),
       (0, 2, -1, -2, 1, 0),
       (0, 1, 3 / 2, -2, -3 / 2, 1))
_G = ((1, 0, 0),
      (-1 / 3, -1 / 3, -1 / 3),
      (1 / 3, -1 / 3, 1 / 3),
      (1 / 15, 2 / 15, 4 / 15),
      (-16 / 15, 8 / 15, -4 / 15),
      (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -1 / 2, 0),
       (0, 1, 1, 4, 1 / 4, 0),
       (0, 1, -1, 8, -1 / 8, 1))


def winograd_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight [K, C, 3, 3] -> U [36, C, K]``, the transformed filters ``G g G^T``.

    Computed in float64 and rounded once, so the transform adds no error of its own. The 36 rows
    are ordered (column frequency, row frequency) to match :func:`conv3x3_winograd`'s tiles.
    """
    if weight.shape[-2:] != (3, 3):
        raise ValueError(f"expected 3x3 filters, got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,kcij,bj->bakc", g, weight.detach().double(), g)  # [y, x, K, C]
    k, c = weight.shape[:2]
    return u.reshape(_ALPHA * _ALPHA, k, c).transpose(1, 2).to(weight.dtype).contiguous()


def conv3x3_winograd(x: torch.Tensor, u: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Same as ``F.conv2d(x, weight, bias, padding=1)`` for ``x [B, C, H, W]``, with ``u`` from
    :func:`winograd_weight`; returns ``[B, K, H, W]`` in channels-last memory format."""
    batch, channels, height, width = x.shape
    if u.shape[:2] != (_ALPHA * _ALPHA, channels):
        raise ValueError(f"transformed filters {tuple(u.shape)} do not fit {channels} input channels")
    tiles_h, tiles_w = -(-height // TILE), -(-width // TILE)
    out = x.new_empty(batch, tiles_h * TILE, tiles_w * TILE, u.shape[2])
    bt = torch.tensor(_BT, dtype=x.dtype, device=x.device)
    at = torch.tensor(_AT, dtype=x.dtype, device=x.device)
    for b in range(batch):
        plane = x[b].permute(1, 2, 0)  # [H, W, C]
        for row0 in range(0, tiles_h, _BAND):
            rows = min(_BAND, tiles_h - row0)
            band = _padded_band(plane, row0 * TILE - 1, rows * TILE + 2, tiles_w * TILE + 2)
            out[b, row0 * TILE: (row0 + rows) * TILE] = _band(band, rows, tiles_w, u, bt, at)
    result = out if out.shape[1:3] == (height, width) else out[:, :height, :width].contiguous()
    if bias is not None:
        result += bias  # in place: `result` is ours, and a copy would cost a whole output's memory
    return result.permute(0, 3, 1, 2)


def _padded_band(plane: torch.Tensor, top: int, rows: int, cols: int) -> torch.Tensor:
    """Rows ``top .. top + rows - 1`` of ``plane [H, W, C]`` zero-padded to ``[rows, cols, C]``, the
    plane's column 0 at column 1: the convolution's zero border plus whatever completes the last
    tiles, made band by band so that no padded copy of the whole plane is held."""
    height, width, channels = plane.shape
    band = plane.new_zeros(rows, cols, channels)
    first, last = max(top, 0), min(top + rows, height)
    band[first - top: last - top, 1: 1 + width] = plane[first:last]
    return band


def _band(band: torch.Tensor, rows: int, cols: int, u: torch.Tensor, bt: torch.Tensor,
          at: torch.Tensor) -> torch.Tensor:
    """One band of tile rows: ``band [rows*4 + 2, cols*4 + 2, C] -> [rows*4, cols*4, K]``."""
    width, channels = band.shape[1:]
    # Input transform along rows: stack each tile row's 6 input rows, one GEMM with B^T.
    by_row = torch.stack([band[i: i + rows * TILE: TILE] for i in range(_ALPHA)])  # [i, rows, Wp, C]
    by_row = (bt @ by_row.view(_ALPHA, -1)).view(_ALPHA, rows, width, channels)  # [x, ...]
    # ... then along columns.
    by_col = torch.stack([by_row[:, :, j: j + cols * TILE: TILE] for j in range(_ALPHA)])  # [j, x, rows, cols, C]
    v = (bt @ by_col.view(_ALPHA, -1)).view(_ALPHA * _ALPHA, rows * cols, channels)  # [(y, x), T, C]
    m = torch.bmm(v, u)  # [(y, x), T, K]
    k = u.shape[2]
    m = (at @ m.view(_ALPHA, -1)).view(TILE, _ALPHA, -1)  # [v, x, T*K]
    y = torch.matmul(at, m).view(TILE, TILE, rows, cols, k)  # [v, u, row, col, K]
    return y.permute(2, 1, 3, 0, 4).reshape(rows * TILE, cols * TILE, k)
