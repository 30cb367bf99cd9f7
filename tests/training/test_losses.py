"""Losses and matching: hand-made cases, and losses that fall on a tiny model."""

from __future__ import annotations

import numpy as np
import torch

from napari_seem.model import build_seem
from napari_seem.training.data import ArrayDataset, Augmentation, MixedDataset, make_batch
from napari_seem.training.losses import (
    LossWeights,
    dice_loss,
    generic_loss,
    hungarian_match,
    interactive_loss,
    pairwise_bce,
    pairwise_dice,
)
from napari_seem.training.step import TaskConfig, training_step

from tiny import tiny_config


def test_hungarian_match_on_a_hand_made_cost():
    cost = torch.tensor([[1.0, 0.0, 5.0], [0.0, 2.0, 5.0], [5.0, 5.0, 0.0], [3.0, 3.0, 3.0]])
    rows, cols = hungarian_match(cost)
    assert rows.tolist() == [0, 1, 2] and cols.tolist() == [1, 0, 2]


def test_matching_recovers_a_permutation_of_masks():
    generator = torch.Generator().manual_seed(0)
    targets = (torch.rand(4, 100, generator=generator) > 0.5).float()
    order = [2, 0, 3, 1]  # prediction q is target order[q], as confident logits
    predictions = (targets[order] * 2 - 1) * 8
    cost = pairwise_bce(predictions, targets) + pairwise_dice(predictions, targets)
    rows, cols = hungarian_match(cost)
    assert cols.tolist() == order
    assert torch.allclose(pairwise_dice(predictions, targets)[rows, cols], dice_loss(predictions[rows], targets[cols]), atol=1e-6)


def test_generic_loss_labels_matched_queries_and_background():
    targets = torch.zeros(2, 8, 8)
    targets[0, :4], targets[1, 4:] = 1, 1
    masks = torch.full((3, 8, 8), -8.0)
    masks[2, :4] = 8  # query 2 is target 0, query 0 is target 1, query 1 is nothing
    masks[0, 4:] = 8
    good = torch.tensor([[4.0, -4.0], [-4.0, 4.0], [4.0, -4.0]])  # class 0 = object, 1 = background
    terms = generic_loss(masks, good, targets, torch.tensor([0, 0]), LossWeights())
    assert terms["matched"] == 2 and terms["mask"] < 0.01 and terms["dice"] < 0.01 and terms["class"] < 0.01
    wrong = torch.tensor([[-4.0, 4.0], [4.0, -4.0], [-4.0, 4.0]])  # the matched ones say "background"
    swapped = generic_loss(masks, wrong, targets, torch.tensor([0, 0]), LossWeights())
    assert swapped["class"] > 1.0


def test_interactive_loss_supervises_the_best_candidate():
    target = torch.tensor([0.0, 0, 1, 1, 1, 0])
    candidates = torch.stack([-target * 8 + 4, target * 16 - 8, torch.zeros(6)])
    terms = interactive_loss(candidates, torch.tensor([0.0, 5.0, 0.0]), target)
    assert int(terms["best"]) == 1 and terms["mask"] < 0.01 and terms["selection"] < 0.05


def _synthetic_source():
    from synthetic_instances import synthetic_pair

    return MixedDataset([ArrayDataset([synthetic_pair(s) for s in range(2)], "nucleus", target_size=96)])


def test_losses_are_finite_and_fall_on_a_tiny_model():
    torch.manual_seed(0)
    model = build_seem(tiny_config()).train()
    batch = make_batch(_synthetic_source(), 2, Augmentation(crop_size=64), np.random.default_rng(0))
    tasks = TaskConfig(max_rounds=2, deep_supervision=True, objects_per_image=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses, parts = [], None
    for _ in range(12):
        # The same prompts and query draws every step: only the weights change.
        loss, parts = training_step(model, batch, tasks, np.random.default_rng(1), torch.Generator().manual_seed(1))
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(np.isfinite(v) for v in parts.values())
    assert {"generic/class", "interactive/selection", "grounding/mask"} <= set(parts)
    assert losses[-1] < 0.8 * losses[0], losses
