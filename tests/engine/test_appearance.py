"""The object's appearance in SEEM's pixel embedding, the shape prior and given masks: what a
propagation step adds to the decoder's answer (engine.appearance, engine.carry)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.engine.appearance import TARGET_LOGIT, appearance, score, shape_prior
from napari_seem.engine.carry import GIVEN_LOGIT, daughters, given_mask_result
from napari_seem.engine.image import prepare_image
from napari_seem.model import ImageFeatures


def _square(size: int, y: int, x: int, side: int) -> torch.Tensor:
    share = torch.zeros(size, size)
    share[y : y + side, x : x + side] = 1.0
    return share


def _unit_map(share: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """``[C, h, w]`` unit features: the object's cells near one direction, the rest near another."""
    g = torch.Generator().manual_seed(seed)
    fg, bg = torch.zeros(8), torch.zeros(8)
    fg[0], bg[1] = 1.0, 1.0
    features = torch.where(share[None] > 0, fg[:, None, None], bg[:, None, None])
    features = features + 0.2 * torch.randn(8, *share.shape, generator=g)
    return features / features.norm(dim=0, keepdim=True)


def test_the_appearance_scores_the_object_above_its_surroundings_on_another_frame():
    anchor = _square(32, 8, 8, 10)
    app = appearance(_unit_map(anchor), anchor)
    assert float(score(_unit_map(anchor), app)[anchor > 0].mean()) == pytest.approx(TARGET_LOGIT, rel=1e-4)
    moved = _square(32, 10, 11, 10)  # the object two cells down, three right, with other noise
    looks = score(_unit_map(moved, seed=1), app)
    assert float(looks[moved > 0].min()) > 0 > float(looks[moved == 0].max())
    assert appearance(_unit_map(anchor), torch.zeros(32, 32)) is None  # no object, no appearance


def test_the_shape_prior_is_a_clipped_signed_distance_to_the_previous_mask():
    share = _square(64, 20, 20, 20)
    prior = shape_prior(share, width=4.0)
    assert prior[30, 30] == 1.0 and prior[0, 0] == -1.0 and prior[30, 50] == -1.0
    assert 0 < float(prior[20, 30]) <= 0.25 and -0.5 <= float(prior[18, 30]) < 0  # linear across the edge
    assert torch.all(shape_prior(torch.zeros(16, 16), 2.0) == -1.0)


def test_a_given_mask_is_kept_and_its_memory_logits_draw_it_back():
    mask = np.zeros((48, 48), bool)
    mask[10:30, 12:36] = True
    prepared = prepare_image(np.random.default_rng(0).random((48, 48)), target_size=64)
    features = ImageFeatures({}, torch.zeros(1, 4, 16, 16), [], None, (64, 64), (64, 64))
    result = given_mask_result(mask, features, prepared)
    assert np.array_equal(result.mask, mask) and result.score == 1.0
    assert float(result.logits.max()) == GIVEN_LOGIT and float(result.logits.min()) == -GIVEN_LOGIT
    cells = result.logits > 0  # 48 px -> 64 model px -> 16 cells: 3 px of the plane per cell
    assert cells[4:9, 5:11].all() and not cells[:2].any() and not cells[:, 13:].any()


def test_daughters_need_comparable_parts():
    mask = np.zeros((40, 40), bool)
    mask[5:20, 5:15] = True  # 150 px
    mask[5:20, 25:30] = True  # 75 px: a third of the whole, a daughter
    assert len(daughters(mask, mask)) == 2
    mask[5:20, 27:30] = False  # 30 px: an eighth, a fragment
    assert daughters(mask, mask) == []
