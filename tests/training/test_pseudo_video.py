"""Pseudo-video propagation steps: a crop and its moved copy train the step propagation runs."""

import numpy as np
import torch

from napari_seem.model import build_seem
from napari_seem.training.data import Augmentation, Batch, make_batch
from napari_seem.training.pseudo_video import Motion, make_pair, memory_logits
from napari_seem.training.step import TaskConfig, training_step

from test_losses import _synthetic_source
from tiny import tiny_config

STILL = Motion(shift=0.0, rotation=0.0, scale=0.0, wobble=0.0, blur_fraction=0.0, gain=(1.0, 1.0))


def _square_batch(size: int = 64) -> Batch:
    """One gray crop with two bright squares (objects 0 and 1)."""
    image = torch.full((1, 3, size, size), 40.0)
    masks = torch.zeros(2, size, size, dtype=torch.bool)
    masks[0, 10:22, 12:24] = True
    masks[1, 36:50, 30:44] = True
    image[0, :, masks.any(0)] = 220.0
    return Batch(image, [masks], [torch.zeros(2, dtype=torch.long)], [("nucleus",)])


def test_the_moved_masks_lie_on_the_moved_objects():
    rng = np.random.default_rng(0)
    for _ in range(5):
        pair = make_pair(_square_batch(), 2, Motion(blur_fraction=0.0, gain=(1.0, 1.0)), rng)
        moved = pair.target[0].mean(0).numpy()
        for mask in pair.target_masks[0]:
            assert mask.any()
            assert moved[mask].mean() > 180  # the bright square is under its mask in the new frame
        assert moved[~pair.target_masks[0].any(0)].mean() < 80
        assert not np.array_equal(pair.target_masks[0], pair.source_masks[0])  # it did move


def test_without_motion_the_pair_is_the_crop_twice():
    batch = _square_batch()
    pair = make_pair(batch, 2, STILL, np.random.default_rng(1))
    assert torch.allclose(pair.target, batch.images, atol=1e-3)
    assert sorted(m.sum() for m in pair.target_masks[0]) == sorted(m.sum() for m in pair.source_masks[0])


def test_objects_moved_out_of_the_crop_are_not_prompted():
    far = Motion(shift=0.45, rotation=0.0, scale=0.0, wobble=0.0, blur_fraction=0.0)
    rng = np.random.default_rng(2)
    for _ in range(10):
        pair = make_pair(_square_batch(), 2, far, rng)
        if pair is None:
            continue
        for source, target in zip(pair.source_masks[0], pair.target_masks[0]):
            assert target.sum() >= 0.5 * source.sum()


def test_memory_logits_are_those_of_a_known_mask():
    mask = np.zeros((1, 1, 16, 16), bool)
    mask[0, 0, :8] = True
    logits = memory_logits(list(mask), (4, 4), "cpu")
    assert logits.shape == (1, 1, 4, 4)
    assert (logits[0, 0, :2] > 7).all() and (logits[0, 0, 2:] < -7).all()


def test_video_steps_train_and_log_their_own_terms():
    torch.manual_seed(0)
    model = build_seem(tiny_config()).train()
    batch = make_batch(_synthetic_source(), 2, Augmentation(crop_size=64), np.random.default_rng(0))
    tasks = TaskConfig(max_rounds=2, objects_per_image=2, video_fraction=1.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(10):
        loss, parts = training_step(model, batch, tasks, np.random.default_rng(1), torch.Generator().manual_seed(1))
        assert {"video/mask", "video/dice", "video/selection"} <= set(parts)
        assert "interactive/mask" not in parts
        optimizer.zero_grad()
        loss.backward()
        # The target frame's encode learns (the source frame's is encoded without gradients).
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0], losses


def test_no_video_fraction_draws_nothing_more():
    """The default (no video steps) keeps a run's random stream: old runs resume the same."""
    model = build_seem(tiny_config()).train()
    batch = make_batch(_synthetic_source(), 2, Augmentation(crop_size=64), np.random.default_rng(0))
    rngs = [np.random.default_rng(5), np.random.default_rng(5)]
    for rng, tasks in zip(rngs, (TaskConfig(max_rounds=1), TaskConfig(max_rounds=1, video_fraction=0.0))):
        training_step(model, batch, tasks, rng, torch.Generator().manual_seed(1))
    assert rngs[0].random() == rngs[1].random()
