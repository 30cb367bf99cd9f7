"""The result score: a mask's stability under a change of threshold (what marks lost objects)."""

import numpy as np
import pytest
import torch

from napari_seem.engine.conversion import stability_score


def test_crisp_mask_is_stable_and_faint_blob_is_not():
    crisp = torch.full((64, 64), -12.0)
    crisp[20:40, 20:40] = 12.0
    assert stability_score(crisp) == 1.0

    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    radius = ((yy - 32) ** 2 + (xx - 32) ** 2).sqrt()
    faint = 1.2 - radius / 12  # a shallow cone: the mask's size depends strongly on the threshold
    score = stability_score(faint)
    assert 0.0 < score < 0.3  # below VideoSession's default lost_score


def test_empty_mask_scores_zero():
    empty = torch.full((16, 16), -5.0)
    assert stability_score(empty, empty > 0) == 0.0
    assert stability_score(empty) == 0.0


def test_only_the_parts_touching_the_prompt_are_kept_and_dropped_from_the_memory():
    from napari_seem.engine.conversion import CLIPPED_LOGIT, keep_prompted_parts, restrict_to_prompt

    mask = np.zeros((40, 40), bool)
    mask[2:10, 2:10] = True  # the clicked nucleus
    mask[25:35, 25:35] = True  # a look-alike neighbour the mask spilled onto
    click = np.zeros_like(mask)
    click[5, 5] = True
    kept = keep_prompted_parts(mask, click)
    assert kept[2:10, 2:10].all() and not kept[25:35, 25:35].any()

    nowhere = np.zeros_like(mask)
    nowhere[20, 0] = True  # a click in no part (a hole): nothing is cut
    assert keep_prompted_parts(mask, nowhere) is mask

    logits = torch.full((10, 10), 5.0)  # 1/4 resolution, one cell per 4x4 pixels (scale 1)
    kept, memory = restrict_to_prompt(mask, logits, click, 1.0, (4.0, 4.0))
    assert (memory[7:9, 7:9] == CLIPPED_LOGIT).all()  # the neighbour's cells
    assert (memory[0:3, 0:3] == 5.0).all()  # the kept nucleus's cells


def test_a_clicked_result_has_no_part_away_from_the_click():
    from scipy.ndimage import label

    from napari_seem.engine import SeemPredictor
    from napari_seem.model import build_seem
    from napari_seem.prompts import ObjectPrompt, Point
    from tiny import tiny_config

    torch.manual_seed(0)
    model = build_seem(tiny_config())
    plane = np.random.default_rng(3).integers(0, 4000, (90, 110)).astype(np.uint16)
    loose, strict = SeemPredictor(model, target_size=96, keep_connected=False), SeemPredictor(model, target_size=96)
    for predictor in (loose, strict):
        predictor.set_image(plane)
    prompt = ObjectPrompt(points=[Point(40, 50)])
    full, cut = loose.predict(prompt)[0].mask, strict.predict(prompt)[0].mask
    assert not (cut & ~full).any()  # only ever removes pixels
    parts, count = label(cut, structure=np.ones((3, 3), bool))
    if full[39:42, 49:52].any():  # the mask reaches the click: every kept part touches it
        near = set(np.unique(parts[39:42, 49:52])) - {0}
        assert set(range(1, count + 1)) == near


# ------------------------------------------------------------------------------------ obey_clicks
def _two_touching_discs():
    yy, xx = np.mgrid[:60, :80]
    left = (yy - 30) ** 2 + (xx - 28) ** 2 < 12 ** 2
    right = (yy - 30) ** 2 + (xx - 50) ** 2 < 12 ** 2
    return left, right


def test_a_negative_click_splits_off_the_merged_neighbour():
    from napari_seem.engine.conversion import obey_clicks

    left, right = _two_touching_discs()
    merged = left | right
    logits = np.where(merged, 5.0, -5.0)
    obeyed = obey_clicks(merged, logits, positive=[(30, 26)], negative=[(30, 52)])
    assert obeyed[30, 26] and not obeyed[30, 52]
    assert (obeyed & right).sum() < 0.2 * right.sum() and (obeyed & left).sum() > 0.9 * left.sum()


def test_a_missed_positive_click_adds_its_faint_region_but_not_the_background():
    from napari_seem.engine.conversion import obey_clicks

    left, right = _two_touching_discs()
    logits = np.where(left, 5.0, np.where(right, -1.5, -8.0))  # the right disc is faint
    grown = obey_clicks(left, logits, positive=[(30, 28), (30, 52)], negative=[])
    assert grown[30, 52] and (grown & right).sum() > 0.9 * right.sum()
    flat = np.full(left.shape, -1.5)  # everything faint: the region would be the whole plane
    flat[left] = 5.0
    assert not obey_clicks(left, flat, positive=[(30, 28), (5, 75)], negative=[])[5, 75]


def test_clicks_the_mask_already_obeys_change_nothing():
    from napari_seem.engine.conversion import obey_clicks

    left, _ = _two_touching_discs()
    assert obey_clicks(left, np.where(left, 5.0, -5.0), positive=[(30, 28)], negative=[]) is left


def test_an_object_is_never_named_background():
    from napari_seem.engine.conversion import best_class

    assert best_class(np.array([0.2, 0.1, 0.7]), ["nucleus", "cell"]) == (None, None)
    name, score = best_class(np.array([0.6, 0.1, 0.3]), ["nucleus", "cell"])
    assert name == "nucleus" and score == pytest.approx(0.6)
