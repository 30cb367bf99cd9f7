"""The tile grid and the stitching of per-tile instances (pure functions, no model)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk
from skimage.measure import label

from napari_seem.engine.stitching import paint_labels, stitch, tile_objects
from napari_seem.engine.tile_grid import Region, centred_window, tile_grid, window_for

# tile 128, halo 16 on 416 pixels: windows start at 0, 96, 192, 288; core borders at 112, 208, 304.
TILE, HALO, SIDE = 128, 16, 416


@pytest.mark.parametrize("shape", [(416, 416), (1000, 700), (512, 512), (513, 2000), (100, 3000), (4096, 4096)])
def test_cores_partition_the_plane_and_windows_lie_inside_it_with_a_halo(shape):
    tile, halo = 512, 64
    grid = tile_grid(shape, tile, halo)
    owners = np.zeros(shape, dtype=np.int32)
    for t in grid:
        w, c = t.window, t.core
        owners[c.slices] += 1
        assert 0 <= w.y0 and 0 <= w.x0 and w.y1 <= shape[0] and w.x1 <= shape[1]
        assert w.shape == (min(tile, shape[0]), min(tile, shape[1]))  # shifted inside, never padded
        assert w.contains(c)
        # At least `halo` pixels of context beyond the core, except at the plane's edge.
        for core_side, window_side, edge in ((c.y0, w.y0, 0), (c.x0, w.x0, 0)):
            assert core_side == edge or core_side - window_side >= halo
        for core_side, window_side, edge in ((c.y1, w.y1, shape[0]), (c.x1, w.x1, shape[1])):
            assert core_side == edge or window_side - core_side >= halo
    assert (owners == 1).all()  # every pixel in exactly one core
    assert grid.tile_at(shape[0] - 1, 0).core.contains_point(shape[0] - 1, 0)
    ys, xs = np.nonzero(owners[::97, ::89] > 0)  # a sample of pixels over the whole plane
    ys, xs = ys * 97, xs * 89
    index = grid.core_index(ys, xs)
    for t in grid:
        inside = (ys >= t.core.y0) & (ys < t.core.y1) & (xs >= t.core.x0) & (xs < t.core.x1)
        assert inside.any() == (t.index in index) and (index[inside] == t.index).all()


def test_grid_of_a_plane_no_larger_than_a_tile_is_one_window_and_bad_sizes_are_refused():
    grid = tile_grid((300, 200), 512, 64)
    assert len(grid) == 1 and grid.tiles[0].window == grid.tiles[0].core == Region(0, 0, 300, 200)
    with pytest.raises(ValueError, match="tile > 2 \\* halo"):
        tile_grid((1000, 1000), 128, 64)
    with pytest.raises(ValueError, match="at least one pixel"):
        tile_grid((0, 10), 128, 16)


def test_a_prompt_goes_to_the_tile_whose_core_holds_it_or_to_a_window_centred_on_it():
    grid = tile_grid((SIDE, SIDE), TILE, HALO)
    click = Region(150, 115, 153, 118)  # just right of the core border at x = 112
    assert window_for(click, grid, TILE, margin=8) == Region(96, 96, 224, 224)
    # Too near the window's edge for the margin: a window centred on the prompt instead.
    box = Region(100, 100, 210, 215)
    chosen = window_for(box, grid, TILE, margin=8)
    assert chosen.contains(Region(92, 92, 218, 223)) and chosen not in [t.window for t in grid]
    # The previous result's window is kept when the prompt still fits in it.
    assert window_for(click, grid, TILE, margin=8, preferred=Region(96, 0, 224, 128)) == Region(96, 0, 224, 128)
    # Larger than a tile: a larger window (the predictor downscales it), inside the plane.
    big = centred_window(Region(0, 10, 300, 40), TILE, (SIDE, SIDE))
    assert big == Region(0, 0, 300, 128)


def _ground_truth() -> np.ndarray:
    """Instances (int32 ids) on a 416 x 416 plane: small discs on a 40-pixel lattice, many cut by
    window edges or straddling core borders; a disc larger than the overlap centred on a core border
    (cut in both windows); one on the corner of four cores; a bar across the whole plane."""
    mask = np.zeros((SIDE, SIDE), dtype=bool)
    for cy in range(20, SIDE, 40):
        for cx in range(20, SIDE, 40):
            if not (100 <= cy <= 220 and 60 <= cx <= 180):  # room for the big disc
                mask[disk((cy, cx), 6, shape=mask.shape)] = True
    mask[disk((160, 112), 40, shape=mask.shape)] = True
    mask[disk((304, 208), 5, shape=mask.shape)] = True
    mask[247:254, 5:411] = True
    return label(mask, connectivity=1).astype(np.int32)


def _tile_outputs(truth: np.ndarray, grid, seed: int = 0):
    """What a segmenter that sees only its window finds: the visible pieces of each object, in a
    shuffled order with made-up classes and scores."""
    rng = np.random.default_rng(seed)
    per_tile = []
    for t in grid:
        pieces = label(truth[t.window.slices] > 0, connectivity=1)
        order = rng.permutation(pieces.max()) + 1
        shuffled = np.zeros_like(pieces)
        for new_id, old_id in enumerate(order, start=1):
            shuffled[pieces == old_id] = new_id
        n = int(pieces.max())
        per_tile.append(tile_objects(t, shuffled, rng.integers(0, 3, n).tolist(), rng.random(n).tolist()))
    return per_tile


def _as_sets(labels: np.ndarray) -> set[frozenset]:
    """Each instance as the set of its flat pixel indices (ids do not matter)."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(1, flat.max() + 2))
    return {frozenset(order[bounds[i] : bounds[i + 1]].tolist()) for i in range(len(bounds) - 1)}


def test_stitching_keeps_every_object_once_and_whole():
    truth = _ground_truth()
    grid = tile_grid(truth.shape, TILE, HALO)
    objects = stitch(grid, _tile_outputs(truth, grid))
    labels = paint_labels(grid, objects)
    assert labels.dtype == np.int32 and set(np.unique(labels)) == set(range(len(objects) + 1))
    assert len(objects) == truth.max()  # no duplicates from the halos, no pieces
    assert _as_sets(labels) == _as_sets(truth)  # each object whole, at its pixels
    # Without rule 2 the big disc and the bar, cut in every window, come back in pieces.
    unmerged = stitch(grid, _tile_outputs(truth, grid), merge_threshold=2.0)
    assert len(unmerged) > truth.max()


def test_stitching_min_area_and_writing_into_another_array():
    truth = _ground_truth()
    grid = tile_grid(truth.shape, TILE, HALO)
    objects = stitch(grid, _tile_outputs(truth, grid), min_area=200)
    areas = np.bincount(truth.ravel())[1:]
    assert len(objects) == int((areas >= 200).sum()) == 2  # the big disc and the bar
    out = np.full(truth.shape, 99, dtype=np.int64)  # every pixel is written, background too
    paint_labels(grid, objects, out)
    assert set(np.unique(out)) == {0, 1, 2}
    with pytest.raises(ValueError, match="out has shape"):
        paint_labels(grid, objects, np.zeros((10, 10), dtype=np.int32))


def test_neighbours_drawn_differently_by_two_tiles_stay_apart_and_the_core_owner_decides():
    """Two objects touch at x = 110, near the core border x = 112. Tile 0 draws A 4 pixels too wide;
    tile 1 draws B where it is. They are not merged (they agree on little), and each disputed
    pixel goes to the object of the tile whose core holds it."""
    grid = tile_grid((100, SIDE), TILE, HALO)
    left, right = grid.tiles[0], grid.tiles[1]  # windows x in [0, 128) and [96, 224)
    a_tile0 = np.zeros(left.window.shape, dtype=np.int32)
    a_tile0[40:60, 80:114] = 1  # A, over-reaching into B
    a_tile0[40:60, 114:128] = 2  # B, cut by the window's edge: centroid in tile 1's core, dropped
    b_tile1 = np.zeros(right.window.shape, dtype=np.int32)
    b_tile1[40:60, 0:14] = 1  # A cut by the window's edge (x 96..110): centroid in tile 0's core, dropped
    b_tile1[40:60, 14:44] = 2  # B (x 110..140)
    per_tile = [tile_objects(left, a_tile0, [0, 0], [0.9, 0.8]), tile_objects(right, b_tile1, [1, 1], [0.7, 0.6])]
    per_tile += [[] for _ in grid.tiles[2:]]
    objects = stitch(grid, per_tile)
    labels = paint_labels(grid, objects)
    assert len(objects) == 2 and [o.class_id for o in objects] == [0, 1]
    expected = np.zeros((100, SIDE), dtype=np.int32)
    expected[40:60, 80:112] = 1
    expected[40:60, 112:140] = 2
    assert np.array_equal(labels, expected)
