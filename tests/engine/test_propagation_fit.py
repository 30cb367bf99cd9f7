"""A mask given to a propagation sets its object's own threshold (``PropagationConfig.calibrate``), and a
time-lapse object keeps its area (``keep_area``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.engine import SeemPredictor, VideoSession
from napari_seem.engine.carry import PropagationConfig, area_offset, calibration_offset
from napari_seem.engine.conversion import mask_iou
from napari_seem.model import build_seem
from napari_seem.prompts import MaskPrompt, ObjectPrompt, Point

from tiny import tiny_config

NEVER_LOST = {"lost_iou": 0.0, "lost_score": 0.0}


def test_the_offset_moves_the_threshold_onto_the_target_outline():
    ramp = (torch.arange(40, dtype=torch.float32) * 0.25 - 5.0).repeat(4, 1)  # logit -5..4.75 along x
    target = ramp > -1.875  # the outline lies 2 logits below where the model puts it
    assert calibration_offset(ramp, target) == 2.0
    assert calibration_offset(ramp, ramp > 1.625) == -1.5


def test_the_offset_stays_put_where_it_buys_nothing_and_for_no_target():
    saturated = torch.full((8, 8), -9.0)
    saturated[2:6, 2:6] = 9.0
    assert calibration_offset(saturated, saturated > 0) == 0.0  # any |b| < 9 gives the same mask
    assert calibration_offset(saturated, torch.zeros(8, 8, dtype=torch.bool)) == 0.0
    far = calibration_offset(torch.linspace(-20, 20, 64).view(8, 8), torch.ones(8, 8, dtype=torch.bool))
    assert 2.0 <= far <= 3.0  # towards the target (within the IoU tolerance), no further than the limit


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return SeemPredictor(build_seem(tiny_config()), target_size=64)


def _still_frames(count: int = 3) -> np.ndarray:
    """Identical frames: a bright disc over noise (a step onto frame 1 is the calibration step)."""
    rng = np.random.default_rng(0)
    frame = (rng.random((48, 40)) * 500).astype(np.uint16)
    yy, xx = np.mgrid[:48, :40]
    frame[(yy - 24) ** 2 + (xx - 20) ** 2 < 81] += 3000
    return np.stack([frame] * count)


def test_a_painted_outline_is_kept_better_on_the_next_frame(predictor):
    frames = _still_frames()
    painted = np.zeros(frames.shape[1:], bool)
    painted[14:34, 10:30] = True  # the user's outline: a square around the disc
    follow = {}
    for calibrate in (False, True):
        session = VideoSession(predictor, frames, config=PropagationConfig(calibrate=calibrate), **NEVER_LOST)
        session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(painted)])})
        list(session.propagate("forward"))
        follow[calibrate] = mask_iou(session.results[1][1].mask, painted)
    # The calibrated step is the best offset's (up to its tolerance of 0.02 IoU at the logit grid).
    assert follow[True] >= follow[False] - 0.03, follow


def test_only_given_masks_are_calibrated(predictor):
    frames = _still_frames()
    painted = np.zeros(frames.shape[1:], bool)
    painted[14:34, 10:30] = True
    session = VideoSession(predictor, frames, **NEVER_LOST)
    session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(painted)]),
                            2: ObjectPrompt(points=[Point(24, 20)])})
    assert 0 in session._offsets.get(1, {})
    assert session._offset(2, 0) == 0.0  # a click leaves the model's own threshold
    session.remove(1, 0)
    assert session._offset(1, 0) == 0.0


def test_the_area_offset_is_the_smallest_raise_that_restores_the_area():
    ramp = (torch.arange(40, dtype=torch.float32) * 0.25 - 5.0).repeat(4, 1)  # 4 x 40 cells, logit -5..4.75
    assert (ramp > 0).sum() == 4 * 19
    assert area_offset(ramp, 4 * 19) == 0.0  # already large enough: untouched
    assert area_offset(ramp, 4 * 23) == 1.0  # four more columns: one logit
    assert area_offset(ramp, 4 * 40) == 3.0  # out of reach: the limit


@pytest.mark.parametrize("kind", ["time", "z"])
def test_a_time_lapse_object_keeps_its_area_and_a_z_object_may_shrink(predictor, kind):
    frames = _still_frames()
    painted = np.zeros(frames.shape[1:], bool)
    painted[12:36, 8:32] = True
    session = VideoSession(predictor, frames, stack_kind=kind, **NEVER_LOST)
    session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(painted)])})
    cells = session._anchor_cells[1][0]
    h, w = session._frame(0).features.mask_features.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    shrunk = 2.0 - torch.hypot(yy - h / 2, xx - w / 2)  # a disc of radius 2 cells: far below the anchor's area
    assert (shrunk > 0).sum() < 0.5 * cells
    kept = session._kept_area(1, 0, shrunk)
    if kind == "z":  # a nucleus does shrink towards its ends
        assert torch.equal(kept, shrunk)
    else:
        assert (kept > 0).sum() >= 0.9 * cells
        assert ((kept - 0.25) > 0).sum() < 0.9 * cells  # the smallest raise that does it
