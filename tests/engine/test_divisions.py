"""Divisions: by default a cell that divides keeps both daughters under its id; with
``divisions="split"`` each daughter becomes a new object whose mother is recorded.

The session's bookkeeping is tested with a scripted step (the masks a dividing cell would get), the
detection of daughters on plain masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.engine import VideoSession
from napari_seem.engine.carry import daughters
from napari_seem.engine.conversion import ObjectResult
from napari_seem.engine.presence import PresenceSignals
from napari_seem.prompts import MaskPrompt, ObjectPrompt

from tiny import video_predictor

SHAPE = (48, 64)
YY, XX = np.mgrid[: SHAPE[0], : SHAPE[1]]


def disc(y: float, x: float, r: float = 6) -> np.ndarray:
    return (YY - y) ** 2 + (XX - x) ** 2 <= r**2


MOTHER = disc(24, 32, 10)
LEFT, RIGHT = disc(24, 25), disc(24, 39)  # the daughters, both on the mother's place


@pytest.fixture(scope="module")
def predictor():
    return video_predictor()


def scripted(session: VideoSession, divide_on: int):
    """A step that gives the mother one disc before ``divide_on`` and two from there; a daughter
    keeps the disc it was born with."""

    def advance(sources, frame, anchors, tracks):
        new = {}
        for o in sources:
            if o in session.births:
                born = session.results[session.births[o]][o].mask
                mask = LEFT if (born & LEFT).any() else RIGHT
            else:
                mask = MOTHER if frame < divide_on else LEFT | RIGHT
            new[o] = ObjectResult(mask.copy(), torch.zeros(16, 16), 1.0)
            session.signals.setdefault(frame, {})[o] = PresenceSignals(5.0, 3.0, int(mask.sum()), 0.9, 1.0)
        return new, set()

    session._advance = advance
    return session


def _session(predictor, **options) -> VideoSession:
    frames = np.zeros((5, *SHAPE), np.float32) + 0.1 * np.random.default_rng(0).random((5, *SHAPE))
    session = VideoSession(predictor, frames, **options)
    session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(MOTHER)])})
    return scripted(session, divide_on=2)


def test_by_default_both_daughters_keep_the_mothers_id(predictor):
    session = _session(predictor)
    steps = list(session.propagate("forward"))
    assert all(s.divided == {} for s in steps)
    assert np.array_equal(session.results[3][1].mask, LEFT | RIGHT) and session.parents == {}


def test_split_gives_each_daughter_a_new_id_and_records_the_mother(predictor):
    session = _session(predictor, divisions="split")
    steps = {s.frame: s for s in session.propagate("forward")}
    assert steps[1].divided == {} and sorted(steps[1].results) == [1]
    assert steps[2].divided == {1: (2, 3)} and sorted(steps[2].results) == [2, 3]
    assert session.parents == {2: 1, 3: 1} and session.births == {2: 2, 3: 2}
    for t in (2, 3, 4):
        labels = session.labels(t)
        assert set(np.unique(labels)) == {0, 2, 3}, t  # the mother ended where she divided
        assert np.array_equal(labels == 2, LEFT) and np.array_equal(labels == 3, RIGHT)
    assert not steps[3].lost and not steps[4].lost

    again = {s.frame: s for s in session.propagate("forward")}  # re-propagated: the same daughters, once
    assert again[2].divided == {1: (2, 3)} and session.parents == {2: 1, 3: 1}
    assert set(np.unique(session.labels(4))) == {0, 2, 3}


def test_split_ids_start_above_the_ids_in_use(predictor):
    session = _session(predictor, divisions="split", first_new_id=10)
    steps = {s.frame: s for s in session.propagate("forward")}
    assert steps[2].divided == {1: (10, 11)}


def test_split_only_applies_going_forward_and_the_option_is_checked(predictor):
    session = VideoSession(predictor, np.zeros((5, *SHAPE), np.float32), divisions="split")
    session.add_objects(4, {1: ObjectPrompt(masks=[MaskPrompt(MOTHER)])})
    scripted(session, divide_on=-1)  # two discs on every frame
    assert all(s.divided == {} for s in session.propagate("backward"))  # backward, two cells merge: no division
    with pytest.raises(ValueError, match="divisions must be one of"):
        VideoSession(predictor, np.zeros((5, *SHAPE), np.float32), divisions="always")


def test_daughters_are_two_big_parts_on_the_mother():
    assert [m.sum() for m in daughters(LEFT | RIGHT, MOTHER)] == [LEFT.sum(), RIGHT.sum()]
    assert daughters(MOTHER, MOTHER) == []  # one part: no division
    speck = disc(24, 45, 1)
    assert len(daughters(LEFT | speck, MOTHER | speck)) == 0  # a speck is not a daughter
    far = disc(5, 5)
    assert daughters(LEFT | far, MOTHER) == []  # a part off the mother is not her daughter
