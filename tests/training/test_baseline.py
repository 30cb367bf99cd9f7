"""The classical floor of the click protocol (random walker) and the neighbour measure."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.evaluation.baseline import RandomWalkerPredictor
from napari_seem.evaluation.interactive import best_other_iou, evaluate_interactive
from napari_seem.prompts import ObjectPrompt, Point


def _two_disks() -> tuple[np.ndarray, np.ndarray]:
    """Two bright disks on a dark, noisy field: ``(image uint8 [200, 200], labels)``."""
    yy, xx = np.mgrid[:200, :200]
    labels = np.zeros((200, 200), np.int32)
    labels[(yy - 60) ** 2 + (xx - 60) ** 2 < 20**2] = 1
    labels[(yy - 130) ** 2 + (xx - 140) ** 2 < 25**2] = 2
    rng = np.random.default_rng(0)
    image = np.where(labels > 0, 200, 30) + rng.normal(0, 8, labels.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def test_the_random_walker_segments_the_clicked_disk_and_not_its_neighbour():
    image, labels = _two_disks()
    walker = RandomWalkerPredictor()
    walker.set_image(image)
    (result,) = walker.predict([ObjectPrompt(points=[Point(130, 140)])])
    target = labels == 2
    assert result.mask.shape == image.shape
    assert (result.mask & target).sum() / (result.mask | target).sum() > 0.9


def test_the_random_walker_needs_a_positive_click_and_an_image():
    walker = RandomWalkerPredictor()
    with pytest.raises(RuntimeError, match="set_image"):
        walker.predict([ObjectPrompt(points=[Point(5, 5)])])
    walker.set_image(_two_disks()[0])
    with pytest.raises(ValueError, match="positive"):
        walker.predict([ObjectPrompt(points=[Point(5, 5, positive=False)])])


def test_the_protocol_runs_the_floor_like_a_model_and_counts_neighbours():
    image, labels = _two_disks()
    report = evaluate_interactive(RandomWalkerPredictor(), [("disks", image, labels)], "disks", max_clicks=3)
    assert report.objects == 2 and report.miou["mIoU@1"] > 0.85
    assert report.neighbour_rate == 0.0


def test_best_other_iou_finds_the_neighbour_a_mask_covers():
    labels = np.zeros((10, 10), np.int32)
    labels[:5, :5] = 1
    labels[5:, 5:] = 2
    mask = labels == 2
    assert best_other_iou(mask, labels, object_id=1) == 1.0
    assert best_other_iou(mask, labels, object_id=2) == 0.0


def _disc_stack(count: int, present: range, shift: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(frames, masks)``: a bright disc over noise, moving ``shift`` px per frame, on ``present`` frames."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    frames = (rng.random((count, 64, 64)) * 30).astype(np.float32)
    masks = np.zeros((count, 64, 64), bool)
    for t in present:
        masks[t] = (yy - 32) ** 2 + (xx - 20 - shift * t) ** 2 < 100
        frames[t][masks[t]] += 200
    return frames, masks


def test_the_random_walker_floor_follows_a_moving_disc_and_ends_one_that_fades():
    from napari_seem.evaluation.baseline import RandomWalkerSession
    from napari_seem.prompts import MaskPrompt, ObjectPrompt

    frames, masks = _disc_stack(6, range(6))
    session = RandomWalkerSession(frames, min_contrast=None)
    session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(masks[0])])})
    steps = list(session.propagate("forward"))
    assert [s.frame for s in steps] == [1, 2, 3, 4, 5] and not any(s.lost for s in steps)
    for t in range(1, 6):
        result = session.results[t][1].mask
        assert (result & masks[t]).sum() / (result | masks[t]).sum() > 0.8, t

    frames, masks = _disc_stack(6, range(0, 4), shift=0)  # the disc ends after slice 3
    session = RandomWalkerSession(frames, min_contrast=0.15)
    session.add_objects(0, {1: ObjectPrompt(masks=[MaskPrompt(masks[0])])})
    steps = {s.frame: s for s in session.propagate("forward")}
    assert steps[4].lost == {1} and sorted(session.results) == [0, 1, 2, 3]
