"""Presence: the signals of a carried object, the rule that says it is absent (it *misses* a frame),
and what the session does with misses: a short gap is bridged, a longer one ends the object."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.engine import VideoSession
from napari_seem.engine.presence import RULES, PresenceRule, PresenceSignals, Track, contrast
from napari_seem.prompts import ObjectPrompt, Point

from tiny import NEVER_LOST, video_predictor


@pytest.fixture(scope="module")
def predictor():
    return video_predictor()


def _frames(count: int = 7) -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = (rng.random((count, 48, 40)) * 500).astype(np.uint16)
    yy, xx = np.mgrid[:48, :40]
    stack[:, (yy - 24) ** 2 + (xx - 14) ** 2 < 64] += 3000
    return stack


class ScriptedRule:
    """A rule that misses on the frames it is told (whatever the signals), with a gap of ``gap``."""

    def __init__(self, missing: set[int], gap: int) -> None:
        self.missing, self.gap, self.frame = missing, gap, 0
        self.seen: list[PresenceSignals] = []

    def misses(self, signals: PresenceSignals, track=None) -> bool:
        self.seen.append(signals)
        self.frame += 1  # one object, forward from frame 0: the n-th call is frame n
        return self.frame in self.missing


def test_a_missed_frame_is_bridged_and_a_second_miss_in_a_row_ends_the_object(predictor):
    session = VideoSession(predictor, _frames(), **NEVER_LOST)
    session.add_prompts(0, 1, ObjectPrompt(points=[Point(24, 14)]))
    list(session.propagate("forward"))
    assert sorted(session.results) == list(range(7))  # every frame has a mask from a first run
    session.rule = ScriptedRule(missing={2, 4, 5}, gap=1)
    yielded = {f.frame: f for f in session.propagate("forward")}
    assert sorted(session.results) == [0, 1, 3]  # missed frames lose the first run's masks too
    assert yielded[2].results == {} and yielded[2].lost == set()  # one miss: still the same object
    assert 1 in yielded[3].results  # ... found again on frame 3
    assert yielded[4].lost == set() and yielded[5].lost == {1}  # two misses in a row: lost on the second
    assert yielded[6].results == {} and session.lost == {5: {1}}
    assert len(session.rule.seen) == 5  # nothing is carried after it is lost
    assert all(isinstance(s, PresenceSignals) for s in session.rule.seen)


def test_without_a_gap_the_first_miss_ends_the_object(predictor):
    session = VideoSession(predictor, _frames(), **NEVER_LOST)
    session.rule = ScriptedRule(missing={2}, gap=0)
    session.add_prompts(0, 1, ObjectPrompt(points=[Point(24, 14)]))
    yielded = {f.frame: f for f in session.propagate("forward")}
    assert yielded[2].lost == {1} and sorted(session.results) == [0, 1]


def _signals(contrast_ratio: float, iou: float) -> PresenceSignals:
    return PresenceSignals(peak=5.0, mean=3.0, area=100, iou=iou, similarity=0.9, contrast=contrast_ratio)


def test_the_z_rule_misses_a_faded_or_displaced_mask_and_the_time_rule_does_not():
    z, time = RULES["z"], RULES["time"]
    assert z.gap == 1 and time.gap == 0
    assert z.misses(_signals(0.2, 0.9))  # faded below a quarter of its contrast on the anchor slice
    assert z.misses(_signals(0.9, 0.4))  # moved off half of its previous mask
    assert not z.misses(_signals(0.6, 0.7))
    # relative to the track's peak so far: painted on a faint end slice, the nucleus brightens first
    assert not z.misses(_signals(2.0, 0.9), Track(peak=1.0, low=1.0))
    assert z.misses(_signals(0.6, 0.9), Track(peak=3.0, low=1.0))  # below a quarter of its peak, 3
    # faded to below half of its peak, then twice as bright again: another nucleus under the mask
    assert z.misses(_signals(0.9, 0.9), Track(peak=1.2, low=0.4))
    assert not z.misses(_signals(0.9, 0.9), Track(peak=1.2, low=0.7))
    assert not any(time.misses(_signals(c, i)) for c, i in [(0.2, 0.9), (0.9, 0.4), (-1.0, 0.2)])
    assert PresenceRule(min_iou=0.3).misses(_signals(1.0, 0.2))


def test_stack_kind_picks_the_rule_and_is_checked(predictor):
    assert VideoSession(predictor, _frames(), stack_kind="z").rule == RULES["z"]
    assert VideoSession(predictor, _frames()).rule == RULES["time"]
    with pytest.raises(ValueError, match="stack_kind must be one of"):
        VideoSession(predictor, _frames(), stack_kind="depth")


def test_contrast_of_a_bright_disc_and_of_a_flat_plane():
    yy, xx = np.mgrid[:64, :64]
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 100
    bright = np.where(disc, 200.0, 20.0)
    assert contrast(bright, disc) == pytest.approx(180.0)
    assert contrast(np.full((64, 64), 50.0), disc) == 0.0
    assert contrast(bright, np.zeros_like(disc)) == 0.0
