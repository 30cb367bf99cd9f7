"""The default_tiny preset: its size budget and its absolute positions (ours, off in official configs)."""

from __future__ import annotations

import torch

from napari_seem.model import PRESETS, build_seem
from napari_seem.model.position_encoding import absolute_sine_embedding
from napari_seem.training.step import placed_at


def test_default_tiny_fits_the_size_budget_including_the_token_table():
    model = build_seem("default_tiny", device="meta")
    size = sum(t.numel() * 4 for t in model.state_dict().values())
    token_table = model.predictor.lang_encoder.lang_encoder.token_embedding.weight
    assert token_table.shape == (49408, PRESETS["default_tiny"].text.width)
    assert size <= 25e6, f"{size / 1e6:.1f} MB"


def test_official_presets_keep_the_official_positions():
    for name, cfg in PRESETS.items():
        if name != "default_tiny":
            assert not cfg.decoder.absolute_position and not cfg.pixel_decoder.absolute_position


def test_absolute_embedding_is_shifted_by_the_offset():
    whole = absolute_sine_embedding(8, 12, 8.0, 16)
    part = absolute_sine_embedding(4, 6, 8.0, 16, offset=(8.0, 16.0))
    assert torch.allclose(whole[..., 1:5, 2:8], part, atol=1e-5)
    assert torch.allclose(absolute_sine_embedding(4, 6, 8.0, 16), whole[..., :4, :6])


def test_placed_at_moves_the_image_and_restores_it():
    model = build_seem("default_tiny", device="meta")
    with placed_at(model, (32.0, 64.0)):
        assert model.predictor.position_offset == (32.0, 64.0)
        assert model.sem_seg_head.pixel_decoder.position_offset == (32.0, 64.0)
    assert model.predictor.position_offset == (0.0, 0.0)
    assert model.sem_seg_head.pixel_decoder.position_offset == (0.0, 0.0)
