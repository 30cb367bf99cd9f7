"""A large plane read window by window: numpy, dask, zarr or any array-like that slices.

Nothing here reads the whole plane. :class:`PlaneSource` reads one rectangle (with the chosen
channels) at a time, and :func:`sample_limits` computes the intensity stretch of the whole plane
from a few patches spread over it, so that every tile gets the same normalisation without the
plane ever being loaded.

Sampling: a ``4 x 4`` grid of square patches, one per cell of the plane, holding at most
``sample_pixels`` pixels in all. A patch's side is a power of two and it starts at a multiple of it
(the multiple just before the cell's centre), so that with the usual power-of-two chunks of dask and
zarr arrays a patch reads whole chunks or lies in one, and the sample does not depend on how the
plane is stored (the same pixels from numpy, dask or zarr give the same limits).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .image import percentile_limits, select_channels
from .tile_grid import Region

SAMPLE_GRID = 4  # patches per side of the sampling grid


class PlaneSource:
    """A 2D plane ``[H, W]`` or multichannel ``[H, W, C]`` (or channels on ``channel_axis``), lazy.

    ``channels`` is the choice :func:`~napari_seem.engine.image.select_channels` makes; it is checked
    here, on the array's shape and dtype only, so that a bad choice fails before anything is read.
    """

    def __init__(self, data: Any, channel_axis: int | None = None, channels: Sequence[int] | int | None = None):
        shape = tuple(int(v) for v in getattr(data, "shape", ()))
        if len(shape) not in (2, 3):
            raise ValueError(f"expected a 2D plane (H, W) or (H, W, C), got shape {shape}")
        dtype = np.dtype(getattr(data, "dtype", np.float64))
        if dtype != bool and not np.issubdtype(dtype, np.number):
            raise ValueError(f"unsupported image dtype {dtype}")
        if len(shape) == 2:
            if channel_axis is not None:
                raise ValueError(f"channel_axis={channel_axis} given for a 2D plane of shape {shape}")
            self._channel_axis = None
        else:
            if channel_axis is not None and not -3 <= channel_axis < 3:
                raise ValueError(f"channel_axis {channel_axis} is not an axis of shape {shape}")
            self._channel_axis = 2 if channel_axis is None else channel_axis % 3
        self.data = data
        self.dtype = dtype
        # As given, to tell whether a later call changes it.
        self.choice = (channel_axis, None if channels is None else tuple(np.atleast_1d(channels).tolist()))
        self._user_axis = channel_axis
        self._channels = channels
        rows, cols = (i for i in range(len(shape)) if i != self._channel_axis)
        self.shape: tuple[int, int] = (shape[rows], shape[cols])
        if min(self.shape) < 2:
            raise ValueError(f"plane of shape {self.shape} is too small")
        chosen = self._select(np.zeros((1, 1) if len(shape) == 2 else (1, 1, shape[self._channel_axis]), dtype))
        self.n_channels = 1 if chosen.ndim == 2 else chosen.shape[-1]  # after the choice: 1..3

    def _select(self, block: np.ndarray) -> np.ndarray:
        """Channels of ``block`` (``[h, w]`` or ``[h, w, C]``) as the user chose them."""
        if block.ndim == 2:
            return block
        return select_channels(block, None if self._user_axis is None else -1, self._channels)

    def read(self, region: Region) -> np.ndarray:
        """The pixels of ``region``: ``[h, w]`` or ``[h, w, c]`` (c <= 3 chosen channels), numpy."""
        index: list[slice] = [slice(region.y0, region.y1), slice(region.x0, region.x1)]
        if self._channel_axis is not None:
            index.insert(self._channel_axis, slice(None))
        block = np.asarray(self.data[tuple(index)])
        if self._channel_axis is not None:
            block = np.moveaxis(block, self._channel_axis, -1)
        return self._select(block)


def sample_regions(source: PlaneSource, sample_pixels: int) -> list[Region]:
    """The patches :func:`sample_limits` reads (module docstring); the whole plane if it is small."""
    height, width = source.shape
    if height * width <= sample_pixels:
        return [Region(0, 0, height, width)]
    side = 2 ** max(int(math.log2(math.sqrt(sample_pixels / SAMPLE_GRID**2))), 0)
    regions = []
    for i in range(SAMPLE_GRID):
        for j in range(SAMPLE_GRID):
            centre = ((2 * i + 1) * height // (2 * SAMPLE_GRID), (2 * j + 1) * width // (2 * SAMPLE_GRID))
            y0, x0 = (min(c // side * side, length - min(side, length)) for c, length in zip(centre, (height, width)))
            regions.append(Region(y0, x0, y0 + min(side, height), x0 + min(side, width)))
    return regions


def sample_limits(
    source: PlaneSource, percentiles: tuple[float, float] = (1.0, 99.8), sample_pixels: int = 2**22
) -> tuple[np.ndarray, np.ndarray]:
    """The percentile stretch limits ``(lo, hi)`` (each ``[C]``) of the whole plane, estimated from
    about ``sample_pixels`` pixels (:func:`sample_regions`); exact when the plane has no more."""
    patches = [source.read(region) for region in sample_regions(source, sample_pixels)]
    channels = 1 if patches[0].ndim == 2 else patches[0].shape[-1]
    # One tall "plane" [N, 1] or [N, 1, C] of all sampled pixels, for the usual per-channel percentiles.
    values = np.concatenate([p.reshape(-1, 1) if channels == 1 and p.ndim == 2 else p.reshape(-1, 1, channels)
                             for p in patches])
    return percentile_limits(values, *percentiles)
