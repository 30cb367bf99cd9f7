"""How far an object moved between two frames, from the images alone (used by propagation steps).

A carried cell's previous mask is where the cell *was*; the shape prior and the reach built from it
(:mod:`~napari_seem.engine.carry`) hold the new mask there, and trim the side the cell moves
towards. :func:`object_shift` finds the translation that best maps the object's patch of the
source frame onto the target frame: normalised cross-correlation of the patch, weighted by a soft
copy of the object's mask (its own texture counts, its neighbours' hardly), over all shifts of at
most ``max_shift`` pixels, with a small penalty on the shift's length so that a flat patch stays put.
The previous mask, moved by that shift, then stands for where the object is now. It reads the
images, not the model's answers, so it does not follow the model's own drift.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import binary_dilation, gaussian_filter

SHIFT_PENALTY = 0.002  # subtracted from the correlation (-1..1) per squared pixel of shift


def object_shift(source: np.ndarray, target: np.ndarray, mask: np.ndarray, max_shift: int,
                 margin: int | None = None, penalty: float = SHIFT_PENALTY) -> tuple[float, float]:
    """``(dy, dx)``, in pixels, that moves the content of bool ``mask [h, w]`` in ``source`` onto
    ``target`` (gray ``[h, w]`` both, the same grid): the best whole-pixel shift with ``|dy|, |dx| <=
    max_shift``, refined to a fraction of a pixel by a parabola through its neighbours' scores.
    ``margin`` (default: half the object's radius, plus 2) widens the patch around the mask;
    ``penalty`` is taken off the correlation per squared pixel of shift. ``(0, 0)`` for an empty
    mask or a flat patch."""
    if source.shape != target.shape or source.shape != mask.shape:
        raise ValueError(f"shapes differ: source {source.shape}, target {target.shape}, mask {mask.shape}")
    ys, xs = np.nonzero(mask)
    if len(ys) == 0 or max_shift <= 0:
        return 0.0, 0.0
    if margin is None:
        margin = int(np.sqrt(len(ys) / np.pi)) // 2 + 2
    height, width = mask.shape
    y0, y1 = max(0, ys.min() - margin), min(height, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(width, xs.max() + 1 + margin)
    soft = binary_dilation(mask[y0:y1, x0:x1], iterations=max(1, margin // 3)).astype(np.float32)
    weight = gaussian_filter(soft, margin / 3 + 0.5)
    patch = source[y0:y1, x0:x1].astype(np.float32)
    patch = patch - (patch * weight).sum() / weight.sum()
    spread = float(np.abs(patch * weight).max())
    if spread <= 1e-6 * (float(np.abs(source[y0:y1, x0:x1]).max()) + 1):
        return 0.0, 0.0  # a flat patch
    patch /= spread  # the correlation ignores the patch's gain
    s = max_shift
    # The target around the patch, every shift inside it; shifts that leave the frame are invalid.
    region = np.zeros((y1 - y0 + 2 * s, x1 - x0 + 2 * s), np.float32)
    ty0, tx0 = y0 - s, x0 - s
    sy0, sy1 = max(0, ty0), min(height, y1 + s)
    sx0, sx1 = max(0, tx0), min(width, x1 + s)
    inner = target[sy0:sy1, sx0:sx1]
    region[sy0 - ty0 : sy1 - ty0, sx0 - tx0 : sx1 - tx0] = (inner - inner.mean()) / (inner.std() + 1e-9)
    w2 = weight * weight
    kernel = patch * w2  # sum(K * B) - mean_B * sum(K) is the weighted covariance
    # One grouped correlation: the target with [K, W, W^2], its square with W^2 (and an unused zero).
    kernels = torch.from_numpy(np.stack([kernel, weight, w2, w2, np.zeros_like(w2), np.zeros_like(w2)]))[:, None]
    planes = torch.from_numpy(np.stack([region, region * region]))[None]
    sums = F.conv2d(planes, kernels, groups=2)[0].double().numpy()  # [6, 2s+1, 2s+1]
    mean = sums[1] / float(weight.sum())
    covariance = sums[0] - mean * float(kernel.sum())
    variance = sums[3] - 2 * mean * sums[2] + mean * mean * float(w2.sum())
    norm = np.sqrt(float(((patch * weight) ** 2).sum()) * np.clip(variance, 1e-12, None))
    steps = np.arange(-s, s + 1)
    dy, dx = steps[:, None], steps[None, :]
    score = covariance / norm - penalty * (dy * dy + dx * dx)
    score[~((y0 + dy >= 0) & (y1 + dy <= height))[:, 0], :] = -np.inf
    score[:, ~((x0 + dx >= 0) & (x1 + dx <= width))[0]] = -np.inf
    i, j = np.unravel_index(int(np.argmax(score)), score.shape)
    return float(steps[i] + _vertex(score[i - 1 : i + 2, j])), float(steps[j] + _vertex(score[i, j - 1 : j + 2]))


def _vertex(scores: np.ndarray) -> float:
    """The offset (-0.5..0.5) of the top of the parabola through three scores around a maximum at the
    middle one; 0 at the edge of the search or where a neighbour is invalid."""
    if len(scores) != 3 or not np.isfinite(scores).all():
        return 0.0
    left, middle, right = scores
    curvature = left - 2 * middle + right
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5)) if curvature < 0 else 0.0


def shift_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by ``(dy, dx)`` pixels; what leaves the frame is dropped, what enters is False."""
    out = np.zeros_like(mask)
    height, width = mask.shape
    out[max(0, dy) : height + min(0, dy), max(0, dx) : width + min(0, dx)] = \
        mask[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)]
    return out
