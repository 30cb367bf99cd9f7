"""Click simulation: the protocol's first click and corrective clicks on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.evaluation.clicks import Click, first_click, inner_distance, next_click
from napari_seem.training.simulate import PROMPT_KINDS, simulate_prompt


def disk(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_first_click_is_the_interior_point_farthest_from_the_boundary():
    mask = disk((64, 80), (30, 40), 8) | disk((64, 80), (10, 10), 3)  # a big and a small blob
    assert first_click(mask) == Click(30, 40, True)


def test_the_image_border_counts_as_boundary():
    mask = np.zeros((40, 40), bool)
    mask[:11, :11] = True  # an 11x11 square in the corner: its centre, not the corner, is farthest
    assert first_click(mask) == Click(5, 5, True)
    assert inner_distance(mask)[0, 0] == 1


def test_first_click_on_an_empty_mask_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        first_click(np.zeros((8, 8), bool))


def test_next_click_is_positive_at_the_centre_of_the_largest_miss():
    target = np.zeros((64, 64), bool)
    target[20:41, 20:41] = True
    prediction = target.copy()
    prediction[22:33, 22:33] = False  # an 11x11 hole: the largest error, centred at (27, 27)
    prediction[50:53, 50:53] = True  # a small false positive
    assert next_click(prediction, target) == Click(27, 27, True)


def test_next_click_is_negative_at_the_centre_of_the_largest_false_positive():
    target = disk((64, 64), (20, 20), 6)
    prediction = target | disk((64, 64), (45, 45), 9)  # a big spill elsewhere
    prediction[20, 20] = False  # a one-pixel miss: smaller
    assert next_click(prediction, target) == Click(45, 45, False)


def test_no_click_when_prediction_and_target_agree():
    target = disk((32, 32), (16, 16), 5)
    assert next_click(target.copy(), target) is None


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_simulated_prompts_are_non_empty_and_near_the_object(kind):
    rng = np.random.default_rng(0)
    target = disk((64, 64), (30, 34), 10)
    for _ in range(5):
        prompt = simulate_prompt(target, kind, rng)
        assert prompt.shape == target.shape and prompt.any()
        ys, xs = np.nonzero(prompt)
        assert abs(ys.mean() - 30) < 6 and abs(xs.mean() - 34) < 6
    if kind in ("click", "scribble"):
        assert (simulate_prompt(target, kind, rng) & ~target).sum() == 0 or kind == "click"
