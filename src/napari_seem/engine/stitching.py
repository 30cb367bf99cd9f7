"""Stitching per-tile instances of a large plane into one label image (pure functions, no model).

Each tile of a :class:`~napari_seem.engine.tile_grid.TileGrid` is segmented on its own window. The
rules that turn those per-tile instances into one set of plane instances:

1. **Ownership.** A tile keeps only the instances whose centroid (of the part it sees) lies in its
   core. An object seen whole by two overlapping windows has one centroid, in one core: the halo
   copy is dropped. An object cut by a window's edge has the centroid of its visible part pulled
   away from that edge, so the cut copy is usually dropped in favour of the neighbour, which holds
   the object whole.
2. **Merging.** An object larger than the overlap can be cut in both windows, and both parts can
   then be kept. Two kept instances of different tiles are the same object when they agree where
   both tiles looked: with ``R`` the overlap of the two windows, they merge when
   ``|A & B| >= merge_threshold * min(|A & R|, |B & R|)`` (and ``|A & B| > 0``). Merging is transitive
   (an object over four tiles becomes one). The merged object is the union of its parts; its class
   and score are those of its largest part.
3. **Conflicts.** Objects that were not merged but still share pixels (neighbours whose borders two
   tiles drew differently) never overlap in the output: a shared pixel goes to the object that comes
   from the tile whose core holds that pixel (each tile is trusted where it has full context); if
   both or neither do, to the larger object.
4. **Ids.** Objects smaller than ``min_area`` after that are dropped; the rest get ids 1..n in tile
   raster order, then in each tile's own order.

Objects are kept as :class:`SparseMask` (a bounding box and the pixels inside it; the objects of one
tile share one compact copy of its label image), so memory follows the tiles that hold objects, not
the plane; the label image is written core by core (:func:`paint_labels`), so it can be a zarr array
on disk. Cost: rules 2 and 3 compare objects whose bounding boxes overlap, a few per object for
compact objects such as nuclei.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from .tile_grid import Region, TileGrid, TileWindow

DEFAULT_MERGE_THRESHOLD = 0.5


@dataclass
class SparseMask:
    """A plane's pixels inside ``region`` (plane coordinates; ``data`` is ``[h, w] = region.shape``).

    ``data`` is a bool mask; or, with ``value``, a crop of a label image whose pixels equal to
    ``value`` are the mask. The objects of one tile then share its label image, so their memory
    follows the tiles, not the number of objects times their bounding boxes."""

    region: Region
    data: np.ndarray
    value: int | None = None

    @property
    def mask(self) -> np.ndarray:
        """Bool ``[h, w]`` (the stored array itself when ``value`` is None)."""
        return self.data if self.value is None else self.data == self.value

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def centroid(self) -> tuple[float, float]:
        ys, xs = np.nonzero(self.mask)
        return float(ys.mean()) + self.region.y0, float(xs.mean()) + self.region.x0

    def view(self, region: Region) -> np.ndarray:
        """Bool: the part of the mask inside ``region`` (which must lie within ``self.region``)."""
        part = self.data[region.relative_to(self.region).slices]
        return part if self.value is None else part == self.value

    def remove(self, ys: np.ndarray, xs: np.ndarray) -> None:
        """Take the pixels ``(ys[i], xs[i])`` (plane coordinates, all in the mask) out of it."""
        self.data[ys - self.region.y0, xs - self.region.x0] = 0 if self.value is not None else False

    def count_in(self, region: Region) -> int:
        """Pixels of the mask inside ``region``."""
        common = self.region.intersection(region)
        return 0 if common is None else int(np.count_nonzero(self.view(common)))

    def union(self, other: "SparseMask") -> "SparseMask":
        """A bool-backed mask of the pixels of both."""
        region = self.region.union(other.region)
        merged = np.zeros(region.shape, dtype=bool)
        merged[self.region.relative_to(region).slices] |= self.mask
        merged[other.region.relative_to(region).slices] |= other.mask
        return SparseMask(region, merged)

    def tight(self) -> "SparseMask":
        """The same pixels in their bounding box (an empty mask stays as it is)."""
        found = ndimage.find_objects(self.mask.astype(np.uint8))
        if not found or found[0] is None:
            return self
        ys, xs = found[0]
        r = self.region
        return SparseMask(Region(r.y0 + ys.start, r.x0 + xs.start, r.y0 + ys.stop, r.x0 + xs.stop),
                          self.data[ys, xs], self.value)

    def to_dense(self, shape: tuple[int, int]) -> np.ndarray:
        """Bool ``[H, W]`` of a plane of ``shape`` (allocates the whole plane)."""
        dense = np.zeros(shape, dtype=bool)
        dense[self.region.slices] = self.mask
        return dense


def overlap(a: SparseMask, b: SparseMask) -> int:
    """Pixels in both masks."""
    common = a.region.intersection(b.region)
    return 0 if common is None else int(np.count_nonzero(a.view(common) & b.view(common)))


@dataclass
class TileObject:
    """One instance of one tile: its ``pixels`` (plane coordinates), the ``tile`` index, the class and score."""

    pixels: SparseMask
    tile: int
    class_id: int
    score: float


@dataclass
class StitchedObject:
    """One instance of the plane: ``pixels``, the tiles its parts came from, class and score (those
    of its largest part, of ``part_area`` pixels)."""

    pixels: SparseMask
    tiles: frozenset[int]
    class_id: int
    score: float
    part_area: int = 0


def tile_objects(
    tile: TileWindow, labels: np.ndarray, class_ids: Sequence[int], scores: Sequence[float]
) -> list[TileObject]:
    """The instances of one tile's label image ``labels`` (int ``[h, w]`` = the window's shape, ids
    1..n, instance ``i`` has ``class_ids[i - 1]`` and ``scores[i - 1]``) in plane coordinates."""
    if labels.shape != tile.window.shape:
        raise ValueError(f"tile labels of shape {labels.shape} do not match the window {tile.window.shape}")
    shared = labels.astype(np.min_scalar_type(len(scores)))  # one compact copy, for all its objects
    objects = []
    for i, box in enumerate(ndimage.find_objects(labels, max_label=len(scores))):
        if box is None:  # an id with no pixels (dropped in resizing)
            continue
        ys, xs = box
        region = Region(tile.window.y0 + ys.start, tile.window.x0 + xs.start,
                        tile.window.y0 + ys.stop, tile.window.x0 + xs.stop)
        pixels = SparseMask(region, shared[box], i + 1)
        objects.append(TileObject(pixels, tile.index, int(class_ids[i]), float(scores[i])))
    return objects


def owned_objects(tile: TileWindow, objects: Sequence[TileObject]) -> list[TileObject]:
    """Rule 1: the objects whose centroid lies in the tile's core."""
    return [o for o in objects if tile.core.contains_point(*o.pixels.centroid)]


def _overlapping_pairs(regions: Sequence[Region]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of rectangles that overlap (sweep over sorted tops)."""
    if len(regions) < 2:
        return []
    boxes = np.asarray(regions, dtype=np.int64)  # [N, 4]: y0, x0, y1, x1
    order = np.argsort(boxes[:, 0], kind="stable")
    tops = boxes[order, 0]
    pairs = []
    for rank, i in enumerate(order):
        end = int(np.searchsorted(tops, boxes[i, 2], side="left"))  # later boxes starting above i's bottom
        others = order[rank + 1 : end]
        hit = others[(boxes[others, 1] < boxes[i, 3]) & (boxes[i, 1] < boxes[others, 3])]
        pairs.extend((min(i, j), max(i, j)) for j in hit.tolist())
    return sorted(pairs)


def _same_object(a: TileObject, b: TileObject, grid: TileGrid, merge_threshold: float) -> bool:
    """Rule 2 for two kept instances (of one tile: never, they are disjoint)."""
    seen_by_both = grid.tiles[a.tile].window.intersection(grid.tiles[b.tile].window)
    if a.tile == b.tile or seen_by_both is None:
        return False
    shared = overlap(a.pixels, b.pixels)
    if shared == 0:
        return False
    return shared >= merge_threshold * min(a.pixels.count_in(seen_by_both), b.pixels.count_in(seen_by_both))


def merge_objects(
    grid: TileGrid, kept: Sequence[TileObject], merge_threshold: float = DEFAULT_MERGE_THRESHOLD
) -> list[StitchedObject]:
    """Rule 2: union-find over kept instances that are the same object; in the order of ``kept``."""
    parent = list(range(len(kept)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in _overlapping_pairs([o.pixels.region for o in kept]):
        if _same_object(kept[i], kept[j], grid, merge_threshold):
            ri, rj = root(i), root(j)
            parent[max(ri, rj)] = min(ri, rj)  # the earliest part names the object (keeps the order)
    merged: dict[int, StitchedObject] = {}
    for i, part in enumerate(kept):
        r = root(i)
        area = part.pixels.area
        if r not in merged:
            merged[r] = StitchedObject(part.pixels, frozenset({part.tile}), part.class_id, part.score, area)
            continue
        obj = merged[r]
        obj.pixels = obj.pixels.union(part.pixels)
        obj.tiles = obj.tiles | {part.tile}
        if area > obj.part_area:
            obj.class_id, obj.score, obj.part_area = part.class_id, part.score, area
    return list(merged.values())


def resolve_conflicts(grid: TileGrid, objects: list[StitchedObject]) -> None:
    """Rule 3, in place: after it no pixel belongs to two objects."""
    areas = [o.pixels.area for o in objects]  # sizes before any pixel moves, for the tie rule
    for i, j in _overlapping_pairs([o.pixels.region for o in objects]):
        a, b = objects[i], objects[j]
        if len(a.tiles) == 1 and a.tiles == b.tiles:
            continue  # two objects of one tile are disjoint
        common = a.pixels.region.intersection(b.pixels.region)
        ys, xs = np.nonzero(a.pixels.view(common) & b.pixels.view(common))  # memory: shared pixels only
        if ys.size == 0:
            continue
        owner = grid.core_index(ys + common.y0, xs + common.x0)
        a_home = np.isin(owner, list(a.tiles))
        b_home = np.isin(owner, list(b.tiles))
        a_wins = (a_home & ~b_home) | ((a_home == b_home) & (areas[i] >= areas[j]))
        ys, xs = ys + common.y0, xs + common.x0
        a.pixels.remove(ys[~a_wins], xs[~a_wins])
        b.pixels.remove(ys[a_wins], xs[a_wins])


def stitch(
    grid: TileGrid,
    per_tile: Sequence[Sequence[TileObject]],
    merge_threshold: float = DEFAULT_MERGE_THRESHOLD,
    min_area: int = 0,
) -> list[StitchedObject]:
    """Rules 1-4 (module docstring) on every tile's instances (``per_tile[t]``: tile ``t``'s, any
    order of tiles' lists by index); returns the plane's objects in id order (id = position + 1)."""
    kept = [o for tile, objects in zip(grid.tiles, per_tile) for o in owned_objects(tile, objects)]
    return finish(grid, kept, merge_threshold, min_area)


def finish(grid: TileGrid, kept: Sequence[TileObject], merge_threshold: float, min_area: int) -> list[StitchedObject]:
    """Rules 2-4 on instances already filtered by rule 1 (in tile order)."""
    objects = merge_objects(grid, kept, merge_threshold)
    resolve_conflicts(grid, objects)
    result = []
    for obj in objects:
        if obj.pixels.area >= max(min_area, 1):
            obj.pixels = obj.pixels.tight()
            result.append(obj)
    return result


def paint_labels(grid: TileGrid, objects: Sequence[StitchedObject], out: Any = None) -> Any:
    """Write ``objects`` (id = position + 1) into ``out`` (int ``[H, W]``: numpy, zarr or any array that
    takes slice assignment; a new int32 array when None), one tile core at a time; every pixel is
    written (0 = background). Returns ``out``."""
    if out is None:
        out = np.zeros(grid.shape, dtype=np.int32)
    elif tuple(out.shape) != grid.shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, the plane is {grid.shape}")
    regions = [o.pixels.region for o in objects]
    boxes = np.asarray(regions, dtype=np.int64).reshape(-1, 4)
    for tile in grid.tiles:
        core = tile.core
        block = np.zeros(core.shape, dtype=np.int32)
        touching = np.nonzero((boxes[:, 0] < core.y1) & (core.y0 < boxes[:, 2])
                              & (boxes[:, 1] < core.x1) & (core.x0 < boxes[:, 3]))[0]
        for n in touching.tolist():
            common = regions[n].intersection(core)
            inside = objects[n].pixels.view(common)
            block[common.relative_to(core).slices][inside] = n + 1
        out[core.slices] = block
    return out
