"""The decoder's prompt-similarity term (ours, off in every official config)."""

from __future__ import annotations

from dataclasses import replace

import torch

from napari_seem.model import build_seem
from napari_seem.training.loop import with_prompt_similarity

from tiny import tiny_config


def _click(model, size=64):
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(1)) * 255
    features = model.encode(image)
    pos = torch.zeros(1, size, size, dtype=torch.bool)
    pos[0, 30:33, 40:43] = True
    spatial = model.encode_visual_prompt(features, pos, torch.zeros_like(pos), generator=torch.Generator().manual_seed(0))
    return model.decode(features, spatial=spatial, include_object_queries=False).final["queries_spatial"]


def test_adding_the_term_keeps_every_weight_and_adds_one_scale():
    torch.manual_seed(0)
    plain = build_seem(tiny_config()).eval()
    added = with_prompt_similarity(plain).eval()
    extra = set(added.state_dict()) - set(plain.state_dict())
    assert [k.rsplit(".", 1)[-1] for k in extra] == ["prompt_similarity_scale"]
    assert all(torch.equal(v, added.state_dict()[k]) for k, v in plain.state_dict().items())
    with torch.no_grad():
        same = _click(plain).masks
        added.sem_seg_head.predictor.prompt_similarity_scale.zero_()  # a zero scale is the plain decoder
        assert torch.allclose(_click(added).masks, same, atol=1e-5)


def test_the_term_raises_the_mask_where_the_prompt_is():
    torch.manual_seed(0)
    cfg = tiny_config()
    cfg = replace(cfg, decoder=replace(cfg.decoder, prompt_similarity=True, absolute_position=True))
    model = build_seem(cfg).eval()
    scale = model.sem_seg_head.predictor.prompt_similarity_scale
    with torch.no_grad():
        scale.zero_()
        before = _click(model).masks[0]
        scale.fill_(20.0)
        after = _click(model).masks[0]
    lift = after - before  # [Q, h, w]: the term alone
    at_click = lift[:, 31 // 4, 41 // 4]
    far = lift[:, 2, 2]
    assert (at_click > far).all()
