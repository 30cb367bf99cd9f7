"""Prompt data and rasterisation (pure numpy; no torch, no napari)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, PromptError, Scribble, rasterize

from model.parity import FIXTURES_DIR


def test_prompts_module_imports_neither_torch_nor_napari():
    assert "napari_seem.prompts" in sys.modules
    import napari_seem.prompts as prompts

    source = open(prompts.__file__).read()
    assert "import torch" not in source and "import napari" not in source


def test_click_is_a_3x3_square_and_negatives_go_apart():
    pos, neg = rasterize(ObjectPrompt(points=[Point(10, 20), Point(30, 5, positive=False)]), (40, 40))
    assert pos.sum() == 9 and pos[9:12, 19:22].all()
    assert neg.sum() == 9 and neg[29:32, 4:7].all()


def test_click_at_the_border_is_clipped_not_lost():
    pos, _ = rasterize(ObjectPrompt(points=[Point(0, 0)]), (10, 10))
    assert pos[:2, :2].all() and pos.sum() == 4


@pytest.mark.skipif(not (FIXTURES_DIR / "b2_interactive_scribble_neg.npz").is_file(), reason="fixtures not found")
def test_rasterisation_reproduces_the_official_prompt_masks():
    b1 = np.load(FIXTURES_DIR / "b1_interactive_point.npz")
    b2 = np.load(FIXTURES_DIR / "b2_interactive_scribble_neg.npz")
    pos, _ = rasterize(ObjectPrompt(points=[Point(160, 142)]), (256, 256))
    assert np.array_equal(pos, b1["prompt_pos_mask"][0] > 0.5)
    prompt = ObjectPrompt(scribbles=[Scribble(((150, 128), (160, 142), (170, 156)), width=3)],
                          points=[Point(157, 228, positive=False)])
    pos, neg = rasterize(prompt, (256, 256))
    assert np.array_equal(pos, b2["prompt_pos_mask"][0] > 0.5)
    assert np.array_equal(neg, b2["prompt_neg_mask"][0] > 0.5)


def test_box_and_mask_prompts():
    mask = np.zeros((20, 20), bool)
    mask[2:4, 2:4] = True
    pos, _ = rasterize(ObjectPrompt(boxes=[Box(15, 12, 10, 5)], masks=[MaskPrompt(mask)]), (20, 20))
    assert pos[10:16, 5:13].all() and pos[2:4, 2:4].all() and pos.sum() == 6 * 8 + 4


@pytest.mark.parametrize(
    "prompt, message",
    [
        (ObjectPrompt(), "empty prompt"),
        (ObjectPrompt(points=[Point(50, 5)]), "outside the 40x30 image"),
        (ObjectPrompt(points=[Point(math.nan, 5)]), "finite"),
        (ObjectPrompt(boxes=[Box(5, 5, 5, 20)]), "non-zero height and width"),
        (ObjectPrompt(scribbles=[Scribble(())]), "at least one point"),
        (ObjectPrompt(masks=[MaskPrompt(np.zeros((40, 30), bool))]), "mask is empty"),
        (ObjectPrompt(masks=[MaskPrompt(np.ones((10, 10), bool))]), "does not match"),
        (ObjectPrompt(text="   "), "blank"),
    ],
)
def test_invalid_prompts_name_the_problem(prompt, message):
    with pytest.raises(PromptError, match=message):
        rasterize(prompt, (40, 30))
