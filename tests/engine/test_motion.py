"""An object's shift between two frames from the images alone (``engine.motion``), and its use by a
propagation step (``PropagationConfig.follow_motion``)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.engine import VideoSession
from napari_seem.engine.carry import PropagationConfig
from napari_seem.engine.motion import object_shift, shift_mask
from napari_seem.prompts import MaskPrompt, ObjectPrompt

from tiny import NEVER_LOST, video_predictor


def _textured_cell(shape=(80, 90), centre=(40, 40), radius=12, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """A gray plane with a textured disc (the cell) among a few other textured discs, and the cell's mask."""
    rng = np.random.default_rng(seed)
    plane = rng.normal(100, 3, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2
    plane[mask] += 40 + rng.normal(0, 15, int(mask.sum()))
    return plane, mask


def _moved(plane: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return np.roll(plane, (dy, dx), axis=(0, 1))


@pytest.mark.parametrize("dy, dx", [(3, -2), (0, 0), (-4, 5)])
def test_a_moved_cell_is_found_where_it_went(dy, dx):
    plane, mask = _textured_cell()
    found = object_shift(plane, _moved(plane, dy, dx), mask, max_shift=6)
    assert np.allclose(found, (dy, dx), atol=0.3), found


def test_the_shift_ignores_gain_and_offset_and_an_unrelated_neighbour():
    plane, mask = _textured_cell()
    target = _moved(plane, 2, 3) * 3.0 + 500.0  # another exposure
    target[10:30, 65:85] += np.random.default_rng(1).normal(0, 30, (20, 20))  # a neighbour that changed
    assert np.allclose(object_shift(plane, target, mask, max_shift=6), (2, 3), atol=0.3)


def test_the_search_stays_within_its_limit_and_a_flat_patch_stays_put():
    plane, mask = _textured_cell()
    dy, dx = object_shift(plane, _moved(plane, 9, 0), mask, max_shift=4)
    assert abs(dy) <= 4 and abs(dx) <= 4
    flat = np.full((40, 40), 7.0)
    assert object_shift(flat, flat, flat > 0, max_shift=4) == (0, 0)
    assert object_shift(plane, plane, np.zeros_like(mask), max_shift=4) == (0, 0)


def test_a_cell_at_the_border_is_only_moved_within_the_frame():
    plane, mask = _textured_cell(centre=(40, 12), radius=10)
    dy, dx = object_shift(plane, _moved(plane, 0, -2), mask, max_shift=5)
    assert abs(dy) < 0.5 and -2.5 < dx <= 0


def test_bad_input_is_refused():
    plane, mask = _textured_cell()
    with pytest.raises(ValueError, match="shapes differ"):
        object_shift(plane, plane[:-1], mask, max_shift=3)


def test_a_shift_between_whole_pixels_is_refined():
    plane, mask = _textured_cell()
    smooth = np.repeat(np.repeat(plane, 2, 0), 2, 1)  # the cell at twice the size; moved by one fine pixel
    moved = np.roll(smooth, 3, axis=1)[::2, ::2]  # 1.5 coarse pixels to the right
    dy, dx = object_shift(smooth[::2, ::2], moved, mask, max_shift=4)
    assert abs(dy) < 0.3 and 1.0 <= dx <= 2.0, (dy, dx)


def test_shift_mask_moves_and_drops_what_leaves():
    mask = np.zeros((6, 6), bool)
    mask[0:2, 4:6] = True
    moved = shift_mask(mask, 1, 1)
    assert moved[1:3, 5].all() and moved.sum() == 2  # the column that left the frame is gone
    assert (shift_mask(mask, -1, 0) == np.pad(mask[1:], ((0, 1), (0, 0)))).all()


def test_a_propagation_step_follows_a_moving_cell():
    """With ``follow_motion`` the prior and reach move with the cell: a cell that moves by a third of
    its radius per frame is covered better on the last frame than with the prior held in place."""
    predictor = video_predictor()
    plane, mask = _textured_cell(shape=(64, 96), centre=(32, 24), radius=12)
    frames = np.stack([np.clip(_moved(plane, 0, 4 * t) * 20, 0, 65535).astype(np.uint16) for t in range(4)])
    truths = [_moved(mask, 0, 4 * t) for t in range(4)]
    overlap = {}
    for follow in (0.0, 0.5):
        config = PropagationConfig(follow_motion=follow, decoder_weight=0.0, appearance_weight=0.0)
        session = VideoSession(predictor, frames, config=config, **NEVER_LOST)
        session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(truths[0])])})
        list(session.propagate("forward"))
        last = session.results[3][1].mask
        overlap[follow] = np.count_nonzero(last & truths[3]) / np.count_nonzero(last | truths[3])
    print(overlap)
    assert overlap[0.5] > overlap[0.0] + 0.2, overlap
