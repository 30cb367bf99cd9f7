"""The result score: a mask's stability under a change of threshold (what marks lost objects)."""

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
