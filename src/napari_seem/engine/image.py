"""From a microscopy plane to the model's input: one normalisation and one resize policy.

Normalisation: microscopy intensities (uint8, uint16, float, any range) are mapped to 0..255 by a
percentile stretch per channel (``low``..``high`` percentiles, default 1 and 99.8), which is robust
to hot pixels and to empty backgrounds. Gray planes are replicated to RGB; multichannel planes need
a channel choice (one channel, or up to three mapped to R, G, B).

Resize: the plane is scaled (bilinear, antialiased) so its longer side is ``target_size`` pixels
(default 512, SEEM's demo input size and a good CPU budget), but never enlarged more than
``max_upscale`` times (default 2): enlarging adds no detail, only larger and blurrier objects than
the default model was trained on (its training images, 256 to 1272 pixels, were enlarged 2x at
most), so a 120-pixel plane becomes a 240-pixel input, not a 512-pixel one. The scale factor is kept
to map prompts in and masks out.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

DEFAULT_TARGET_SIZE = 512
MAX_UPSCALE = 2.0  # a plane is enlarged at most this many times (module docstring)
# The median object radius, in model pixels, of the default model's training sets as the engine
# prepares them (DSB 2018 nuclei 11.0, Usiigaci cells 12.4): the size it segments best.
TRAINED_RADIUS = 12.0
MIN_TARGET_SIZE = 64
MAX_PLANE_PIXELS = 2**31  # larger planes need tiling (engine.tiling.TiledPredictor); refuse them clearly


@dataclass(frozen=True)
class PreparedImage:
    """``rgb``: float32 ``[3, h, w]`` in 0..255 at model resolution. ``original_shape``: (H, W) of the
    plane. ``scale``: model pixels per original pixel. ``signature``: hash of content + preparation."""

    rgb: np.ndarray
    original_shape: tuple[int, int]
    scale: float
    signature: str

    @property
    def model_shape(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[2]


def select_channels(image: np.ndarray, channel_axis: int | None, channels: Sequence[int] | int | None) -> np.ndarray:
    """A plane ``[H, W]`` or ``[H, W, C]`` (C <= 3) from ``image`` and a channel choice."""
    image = np.asarray(image)
    if image.ndim == 2:
        return image
    if image.ndim != 3:
        raise ValueError(f"expected a 2D plane (H, W) or (H, W, C), got shape {image.shape}")
    axis = -1 if channel_axis is None else channel_axis
    image = np.moveaxis(image, axis, -1)
    if channels is None:
        if image.shape[-1] in (3, 4) and channel_axis is None:
            return image[..., :3]
        if image.shape[-1] == 1:
            return image[..., 0]
        raise ValueError(
            f"image has {image.shape[-1]} channels: choose one channel or up to three (channels=...)"
        )
    chosen = [channels] if isinstance(channels, (int, np.integer)) else list(channels)
    if not 1 <= len(chosen) <= 3 or any(not -image.shape[-1] <= c < image.shape[-1] for c in chosen):
        raise ValueError(f"channels {chosen} are not 1-3 valid indices of {image.shape[-1]} channels")
    plane = image[..., chosen]
    return plane[..., 0] if len(chosen) == 1 else plane


def _as_float(plane: np.ndarray) -> np.ndarray:
    """``plane`` as float32 with non-finite values set to 0 (bool and any numeric dtype)."""
    plane = np.asarray(plane)
    if plane.dtype == bool:
        plane = plane.astype(np.uint8)
    if not np.issubdtype(plane.dtype, np.number):
        raise ValueError(f"unsupported image dtype {plane.dtype}")
    data = plane.astype(np.float32, copy=False)  # never written to in place
    if not np.isfinite(data).all():
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    return data


def percentile_limits(plane: np.ndarray, low: float = 1.0, high: float = 99.8) -> tuple[np.ndarray, np.ndarray]:
    """The stretch limits ``lo``, ``hi`` (each ``[C]``; C = 1 for a gray ``[H, W]`` plane, else the
    last axis of ``[H, W, C]``): the ``low`` and ``high`` percentiles of each channel."""
    data = _as_float(plane)
    flat = data.reshape(-1, 1) if data.ndim == 2 else data.reshape(-1, data.shape[-1])
    lo, hi = np.percentile(flat, [low, high], axis=0)
    return lo, hi


def normalize_intensity(
    plane: np.ndarray,
    low: float = 1.0,
    high: float = 99.8,
    limits: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Percentile stretch per channel to float32 0..255; a constant plane maps to 0.

    ``limits``: fixed ``(lo, hi)`` (scalars or ``[C]``) used instead of this plane's percentiles, so
    that the tiles of one large plane share one stretch (e.g. :func:`percentile_limits` of a sample
    of the whole plane)."""
    data = _as_float(plane)
    if limits is None:
        lo, hi = percentile_limits(data, low, high)
    else:
        lo, hi = check_limits(limits, 1 if data.ndim == 2 else data.shape[-1])
    span = np.maximum(hi - lo, 1e-12)
    out = np.clip((data - lo) / span, 0.0, 1.0) * 255.0
    return np.where(hi - lo > 0, out, 0.0).astype(np.float32)


def check_limits(limits: tuple[np.ndarray, np.ndarray], n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)`` as float arrays of 1 or ``n_channels`` values each, finite; else ValueError."""
    try:
        lo, hi = (np.asarray(v, dtype=np.float64).reshape(-1) for v in limits)
    except (TypeError, ValueError):
        raise ValueError(f"limits must be a pair (lo, hi) of numbers or per-channel arrays, got {limits!r}") from None
    if lo.size not in (1, n_channels) or hi.size not in (1, n_channels):
        raise ValueError(f"limits must hold 1 or {n_channels} values each, got {lo.size} and {hi.size}")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError(f"limits must be finite, got {limits!r}")
    return lo, hi


def target_size_for(plane_shape: tuple[int, int], radius: float, target_size: int = DEFAULT_TARGET_SIZE,
                    max_upscale: float = MAX_UPSCALE) -> int:
    """The long side (model pixels) at which objects of ``radius`` plane pixels measure
    ``TRAINED_RADIUS``: never above ``target_size`` (the model's absolute positions stop at 512),
    never more than ``max_upscale`` times the plane, at least ``MIN_TARGET_SIZE``."""
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    long_side = max(plane_shape)
    size = long_side * TRAINED_RADIUS / radius
    return int(round(max(min(size, target_size, long_side * max_upscale), min(MIN_TARGET_SIZE, target_size))))


def prepare_image(
    image: np.ndarray,
    channel_axis: int | None = None,
    channels: Sequence[int] | int | None = None,
    target_size: int = DEFAULT_TARGET_SIZE,
    percentiles: tuple[float, float] = (1.0, 99.8),
    limits: tuple[np.ndarray, np.ndarray] | None = None,
    max_upscale: float | None = MAX_UPSCALE,
) -> PreparedImage:
    """Normalise and resize one plane for the model; see the module docstring for the policy.
    ``limits``: fixed stretch limits instead of the plane's percentiles (see :func:`normalize_intensity`);
    ``max_upscale``: the most the plane is enlarged (``None``: to ``target_size`` whatever its size)."""
    from skimage.transform import resize

    plane = select_channels(image, channel_axis, channels)
    if plane.shape[0] * plane.shape[1] > MAX_PLANE_PIXELS:
        raise ValueError(f"plane of {plane.shape[0]}x{plane.shape[1]} pixels is too large for one pass: "
                         "use TiledPredictor")
    if min(plane.shape[:2]) < 2:
        raise ValueError(f"plane of shape {plane.shape[:2]} is too small")
    normalized = normalize_intensity(plane, *percentiles, limits=limits)
    height, width = plane.shape[:2]
    scale = target_size / max(height, width)
    capped = max_upscale is not None and scale > max_upscale
    if capped:
        scale = max_upscale
    out_h, out_w = max(round(height * scale), 1), max(round(width * scale), 1)
    if (out_h, out_w) != (height, width):
        normalized = resize(normalized, (out_h, out_w), order=1, anti_aliasing=scale < 1, preserve_range=True)
    rgb = normalized if normalized.ndim == 3 else np.repeat(normalized[..., None], 3, axis=-1)
    if rgb.shape[-1] == 2:  # two channels: R, G and an empty B
        rgb = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)
    rgb = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
    return PreparedImage(rgb, (height, width), scale,
                         _signature(plane, target_size, percentiles, limits, max_upscale if capped else None))


def _signature(
    plane: np.ndarray, target_size: int, percentiles: tuple[float, float], limits: tuple | None = None,
    upscale: float | None = None,
) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(plane).tobytes())
    digest.update(f"{plane.shape}|{plane.dtype}|{target_size}|{percentiles}".encode())
    if limits is not None:  # only then, so that signatures without fixed limits stay as they were
        digest.update(f"|limits={[np.asarray(v, dtype=np.float64).tolist() for v in limits]}".encode())
    if upscale is not None:  # only a capped enlargement changes the input: other signatures stay
        digest.update(f"|upscale<={upscale}".encode())
    return digest.hexdigest()
