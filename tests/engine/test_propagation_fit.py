"""How a propagation fits itself to the objects it is given: a given mask sets its object's threshold
(``PropagationConfig.calibrate``), a time-lapse object keeps its area (``keep_area``), and the first
given masks set the frames' model size (``VideoSession(scale_to_objects=)``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_seem.engine import SeemPredictor, VideoSession
from napari_seem.engine.carry import PropagationConfig, area_offset, calibration_offset
from napari_seem.engine.conversion import mask_iou
from napari_seem.engine.image import target_size_for
from napari_seem.model import build_seem
from napari_seem.prompts import MaskPrompt, ObjectPrompt, Point

from tiny import NEVER_LOST, tiny_config, video_predictor


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
    return video_predictor()


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


def test_the_frames_size_puts_given_objects_at_the_trained_radius():
    assert target_size_for((100, 100), 10.0, 512) == 120  # 12 model pixels of radius
    assert target_size_for((512, 512), 27.4, 512) == 224  # a large cell: the frame shrinks
    assert target_size_for((100, 100), 1.0, 512) == 200  # enlarged 2x at most
    assert target_size_for((2000, 1500), 2.0, 512) == 512  # never beyond the model's positions
    assert target_size_for((100, 100), 100.0, 512) == 64  # never below 64
    with pytest.raises(ValueError, match="positive"):
        target_size_for((100, 100), 0.0)


def test_a_session_scales_its_frames_to_the_first_given_masks():
    model_predictor = SeemPredictor(build_seem(tiny_config()), target_size=512)
    frames = np.stack([(np.random.default_rng(s).random((200, 200)) * 500).astype(np.uint16) for s in range(3)])
    disc = np.zeros((200, 200), bool)
    yy, xx = np.mgrid[:200, :200]
    disc[(yy - 100) ** 2 + (xx - 100) ** 2 < 40 ** 2] = True  # radius 40: 200 * 12 / 40 = 60 -> 64
    session = VideoSession(model_predictor, frames, **NEVER_LOST)
    session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(disc)])})
    assert max(session._frame(1).prepared.model_shape) == 64
    assert session.results[0][1].mask.shape == (200, 200)  # masks still come back at the plane's size

    fixed = VideoSession(model_predictor, frames, scale_to_objects=False, **NEVER_LOST)
    fixed.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(disc)])})
    assert max(fixed._frame(1).prepared.model_shape) == 400  # the default: 2x at most
    later = VideoSession(model_predictor, frames, scale_to_objects=False, **NEVER_LOST)
    later.add_objects(0, {1: ObjectPrompt(points=[Point(100, 100)])})
    later.scale_to_objects = True
    later.add_objects(0, {2: ObjectPrompt(masks=[MaskPrompt(disc)])})  # frames were read: too late
    assert later.target_size == 512


def test_clicks_are_answered_once_to_learn_the_objects_size(predictor, monkeypatch):
    frames = np.stack([(np.random.default_rng(s).random((200, 200)) * 500).astype(np.uint16) for s in range(3)])
    session = VideoSession(SeemPredictor(predictor.model, target_size=512), frames, **NEVER_LOST)
    sizes = []
    real = session.predictor.predict

    def answer(prompts, *args, **kwargs):  # a 30-pixel disc whatever the click: 200 * 12 / 30 = 80
        sizes.append(session.predictor.prepared.model_shape)
        out = real(prompts, *args, **kwargs)
        yy, xx = np.mgrid[:200, :200]
        disc = (yy - 100) ** 2 + (xx - 100) ** 2 < 30 ** 2
        return [replace(r, mask=disc) for r in out]

    monkeypatch.setattr(session.predictor, "predict", answer)
    session.add_objects(0, {1: ObjectPrompt(points=[Point(100, 100)])})
    assert sizes == [(400, 400), (80, 80)]  # the probe at the default size, then the answer at the new one
    assert session.target_size == 80


def test_carried_objects_do_not_share_pixels(predictor):
    """One pixel, one object (``PropagationConfig.exclusive``, the default): two neighbours carried
    together never claim the same pixel (random weights overlap them without the rule)."""
    frames = _still_frames(4)
    left, right = np.zeros(frames.shape[1:], bool), np.zeros(frames.shape[1:], bool)
    left[14:34, 8:24], right[14:34, 16:32] = True, True  # painted with an overlap
    overlaps = {}
    for exclusive in (False, True):
        session = VideoSession(predictor, frames, config=PropagationConfig(exclusive=exclusive), **NEVER_LOST)
        session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(left)]), 2: ObjectPrompt(masks=[MaskPrompt(right)])})
        list(session.propagate("forward"))
        overlaps[exclusive] = sum(int(np.count_nonzero(session.results[t][1].mask & session.results[t][2].mask))
                                  for t in range(1, 4) if {1, 2} <= set(session.results.get(t, {})))
    assert overlaps[False] > 0 and overlaps[True] == 0, overlaps
