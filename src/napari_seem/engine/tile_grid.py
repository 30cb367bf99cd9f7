"""Tile windows over a large plane, and which window a prompt is decoded in (pure functions).

A plane larger than the model input is cut into **windows** of the tile size (in plane pixels)
that overlap by at least ``2 * halo``. Windows are spread evenly and all lie inside the plane: an
edge window is shifted inwards rather than padded (only a plane dimension smaller than the tile
gives a smaller window). Each window owns a **core**: the cores partition the plane, and the
border between two neighbouring cores lies in the middle of their windows' overlap, so every core
pixel has at least ``halo`` pixels of context on every side that is not the plane's edge.

A prompt is decoded in the window of the tile whose core holds the centre of the prompt's bounding
box, when that window also holds the bounding box grown by ``margin``; otherwise in a window
centred on the prompt (the tile size, or larger and then downscaled to the tile size by the
predictor, so that the whole prompt is seen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np


class Region(NamedTuple):
    """Half-open pixel rectangle ``[y0, y1) x [x0, x1)`` of a plane."""

    y0: int
    x0: int
    y1: int
    x1: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    def contains(self, other: "Region") -> bool:
        return self.y0 <= other.y0 and self.x0 <= other.x0 and other.y1 <= self.y1 and other.x1 <= self.x1

    def contains_point(self, y: float, x: float) -> bool:
        return self.y0 <= y < self.y1 and self.x0 <= x < self.x1

    def intersection(self, other: "Region") -> "Region | None":
        """The common rectangle, or None when they do not overlap."""
        y0, x0 = max(self.y0, other.y0), max(self.x0, other.x0)
        y1, x1 = min(self.y1, other.y1), min(self.x1, other.x1)
        return Region(y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None

    def relative_to(self, outer: "Region") -> "Region":
        """This rectangle in the coordinates of ``outer`` (whose top-left corner becomes (0, 0))."""
        return Region(self.y0 - outer.y0, self.x0 - outer.x0, self.y1 - outer.y0, self.x1 - outer.x0)

    def union(self, other: "Region") -> "Region":
        """The smallest rectangle holding both."""
        return Region(min(self.y0, other.y0), min(self.x0, other.x0), max(self.y1, other.y1), max(self.x1, other.x1))


@dataclass(frozen=True)
class TileWindow:
    """One tile of a :class:`TileGrid`: ``window`` is read and encoded, ``core`` is the part it owns.
    ``index`` = row * columns + column, in raster order."""

    index: int
    window: Region
    core: Region


@dataclass(frozen=True)
class TileGrid:
    """The tiles of a plane of ``shape`` (H, W). ``row_starts`` / ``col_starts``: where each row /
    column of cores starts (the first is 0), to find the core of a pixel without a search over tiles."""

    shape: tuple[int, int]
    tiles: tuple[TileWindow, ...]
    row_starts: np.ndarray
    col_starts: np.ndarray

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    def tile_at(self, y: float, x: float) -> TileWindow:
        """The tile whose core holds pixel ``(y, x)`` (clamped into the plane)."""
        row = int(np.searchsorted(self.row_starts, min(max(y, 0), self.shape[0] - 1), side="right")) - 1
        col = int(np.searchsorted(self.col_starts, min(max(x, 0), self.shape[1] - 1), side="right")) - 1
        return self.tiles[row * len(self.col_starts) + col]

    def core_index(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """int ``[n]``: the index of the tile whose core holds each pixel ``(ys[i], xs[i])``."""
        rows = np.searchsorted(self.row_starts, ys, side="right") - 1
        cols = np.searchsorted(self.col_starts, xs, side="right") - 1
        return rows * len(self.col_starts) + cols


def _axis_windows(length: int, tile: int, halo: int) -> tuple[list[int], list[int]]:
    """Window starts and core starts along one axis of ``length`` pixels (windows ``tile`` long,
    overlapping by at least ``2 * halo``; the core border is the middle of each overlap)."""
    if length <= tile:
        return [0], [0]
    count = math.ceil((length - tile) / (tile - 2 * halo)) + 1
    starts = [round(i * (length - tile) / (count - 1)) for i in range(count)]
    cores = [0] + [(starts[i + 1] + starts[i] + tile) // 2 for i in range(count - 1)]
    return starts, cores


def tile_grid(shape: Sequence[int], tile: int = 512, halo: int = 64) -> TileGrid:
    """Tiles covering a plane of ``shape`` (H, W): windows ``tile`` x ``tile`` (smaller only where the
    plane is), overlapping by >= ``2 * halo``, with cores that partition the plane (module docstring)."""
    height, width = (int(v) for v in shape[:2])
    if height < 1 or width < 1:
        raise ValueError(f"a plane needs at least one pixel, got shape {tuple(shape)}")
    if tile < 1 or halo < 0 or tile - 2 * halo < 1:
        raise ValueError(f"need tile >= 1, halo >= 0 and tile > 2 * halo, got tile={tile}, halo={halo}")
    row_windows, row_cores = _axis_windows(height, tile, halo)
    col_windows, col_cores = _axis_windows(width, tile, halo)
    row_ends, col_ends = row_cores[1:] + [height], col_cores[1:] + [width]
    tiles = []
    for r, (wy, cy0, cy1) in enumerate(zip(row_windows, row_cores, row_ends)):
        for c, (wx, cx0, cx1) in enumerate(zip(col_windows, col_cores, col_ends)):
            window = Region(wy, wx, min(wy + tile, height), min(wx + tile, width))
            tiles.append(TileWindow(r * len(col_windows) + c, window, Region(cy0, cx0, cy1, cx1)))
    return TileGrid((height, width), tuple(tiles), np.asarray(row_cores), np.asarray(col_cores))


def grow(region: Region, margin: int, shape: tuple[int, int]) -> Region:
    """``region`` grown by ``margin`` pixels on each side, clipped to a plane of ``shape``."""
    return Region(max(region.y0 - margin, 0), max(region.x0 - margin, 0),
                  min(region.y1 + margin, shape[0]), min(region.x1 + margin, shape[1]))


def centred_window(region: Region, tile: int, shape: tuple[int, int]) -> Region:
    """A window of at least ``tile`` x ``tile`` (at most the plane) holding ``region``, centred on it
    and shifted inside the plane."""
    bounds = []
    for lo, hi, length in ((region.y0, region.y1, shape[0]), (region.x0, region.x1, shape[1])):
        size = min(max(tile, hi - lo), length)
        start = min(max((lo + hi - size) // 2, 0), length - size)
        bounds.append((start, start + size))
    (y0, y1), (x0, x1) = bounds
    return Region(y0, x0, y1, x1)


def window_for(
    bbox: Region, grid: TileGrid, tile: int, margin: int, preferred: Region | None = None
) -> Region:
    """The window a prompt with bounding box ``bbox`` (plane pixels) is decoded in.

    ``preferred`` (the window of the object's previous result, so its memory stays valid) when it
    holds ``bbox`` grown by ``margin``; else the window of the tile whose core holds the centre of
    ``bbox`` when it holds the grown box; else a window centred on the grown box (``centred_window``).
    """
    needed = grow(bbox, margin, grid.shape)
    if preferred is not None and preferred.contains(needed):
        return preferred
    home = grid.tile_at((bbox.y0 + bbox.y1 - 1) / 2, (bbox.x0 + bbox.x1 - 1) / 2).window
    if home.contains(needed):
        return home
    return centred_window(needed, tile, grid.shape)
