"""SEEM / Mask2Former losses as plain functions of predictions and targets.

* **Generic segmentation** (the object queries): Hungarian matching of queries to ground-truth
  instances with the cost ``class_weight * (-p(class)) + mask_weight * BCE + dice_weight * dice``
  (scipy's ``linear_sum_assignment``), then cross-entropy over the vocabulary + background (the
  no-object class weighted ``eos_coef``) for every query, and BCE + dice on the matched masks.
* **Interactive segmentation** (the spatial queries of one prompted object): every candidate query
  gets BCE + dice against the object; the best candidate carries the mask loss (the others are free
  to propose other readings of an ambiguous prompt), and a cross-entropy on the selection logits
  (``mask_emb . prompt_embedding``, what inference takes the argmax of) teaches the model to pick it.
* **Grounding** (the grounding queries and one text): the (query, instance) pair of lowest cost
  carries the mask loss, and a cross-entropy over the text similarities of all queries teaches the
  model to pick that query.

Mask losses are computed on the decoder's 1/4-resolution logits against area-downsampled (soft)
targets, optionally on a random subset of pixels (``num_points``), which keeps the CPU cost small;
the interactive loss may use upsampled logits instead (see ``step.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment


@dataclass(frozen=True)
class LossWeights:
    """Mask2Former's weights (class 2, mask 5, dice 5, no-object 0.1) and the selection CE weight."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    eos_coef: float = 0.1
    selection_weight: float = 2.0


# ---------------------------------------------------------------------------------------- mask terms
def bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid BCE per row: ``[N, P]``, ``[N, P]`` (targets in 0..1) -> ``[N]``."""
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft dice loss per row (+1 smoothing, as Mask2Former): ``[N, P]``, ``[N, P]`` -> ``[N]``."""
    probs = logits.sigmoid()
    numerator = 2 * (probs * targets).sum(-1)
    return 1 - (numerator + 1) / (probs.sum(-1) + targets.sum(-1) + 1)


def pairwise_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE of every prediction against every target: ``[Q, P]``, ``[G, P]`` -> ``[Q, G]``."""
    # BCE(x, 1) = softplus(-x) and BCE(x, 0) = softplus(x) = softplus(-x) + x: one softplus suffices.
    positive = F.softplus(-logits)
    return (positive @ targets.T + (positive + logits) @ (1 - targets).T) / logits.shape[-1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss of every prediction against every target: ``[Q, P]``, ``[G, P]`` -> ``[Q, G]``."""
    probs = logits.sigmoid()
    numerator = 2 * probs @ targets.T
    return 1 - (numerator + 1) / (probs.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)


def downsample_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bool ``[G, H, W]`` -> float ``[G, h, w]``: the fraction of each cell covered (area average),
    so an object smaller than a cell still leaves a soft target."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, *size), dtype=torch.float32)
    return F.adaptive_avg_pool2d(masks[:, None].float(), size)[:, 0]


def sample_pixels(count: int, num_points: int | None, generator: torch.Generator | None, device) -> torch.Tensor | None:
    """Indices of a random subset of ``num_points`` of ``count`` pixels (None: use all)."""
    if num_points is None or num_points >= count:
        return None
    return torch.randperm(count, generator=generator)[:num_points].to(device)


def _flat(masks: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    flat = masks.flatten(1)
    return flat if index is None else flat[:, index]


# ---------------------------------------------------------------------------------------- matching
def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment of ``cost [Q, G]``: ``(query_index [m], target_index [m])``,
    m = min(Q, G), sorted by query."""
    rows, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)


def class_logits(class_emb: torch.Tensor, vocabulary: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """``exp(logit_scale) * cos(class_emb, vocabulary)``: ``[Q, C]``, ``[K+1, C]`` -> ``[Q, K+1]``
    (the decoder's ``class_logits`` with an explicit, per-image vocabulary)."""
    normed = class_emb / (class_emb.norm(dim=-1, keepdim=True) + 1e-7)
    return logit_scale.exp() * normed @ vocabulary.T


# ---------------------------------------------------------------------------------------- tasks
def generic_loss(
    masks: torch.Tensor,
    logits: torch.Tensor,
    targets: torch.Tensor,
    classes: torch.Tensor,
    weights: LossWeights,
    num_points: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Generic segmentation loss of one image.

    ``masks [Q, h, w]`` mask logits, ``logits [Q, K+1]`` class logits (last = no object),
    ``targets [G, h, w]`` soft target masks, ``classes [G]`` their class indices. Returns the summed
    (not averaged) mask terms ``mask``/``dice`` over matched pairs, the mean class CE ``class``, and
    ``matched`` (the number of instances, for normalising the mask terms over a batch).
    """
    num_queries, num_classes = logits.shape[0], logits.shape[1] - 1
    target_classes = torch.full((num_queries,), num_classes, dtype=torch.long, device=logits.device)
    class_weight = torch.ones(num_classes + 1, device=logits.device)
    class_weight[-1] = weights.eos_coef
    zero = masks.sum() * 0
    if targets.shape[0] == 0:
        ce = F.cross_entropy(logits, target_classes, weight=class_weight)
        return {"class": ce, "mask": zero, "dice": zero, "matched": torch.tensor(0.0)}
    index = sample_pixels(masks[0].numel(), num_points, generator, masks.device)
    pred, target = _flat(masks, index), _flat(targets, index)
    with torch.no_grad():
        probs = logits.softmax(-1)
        cost = (
            weights.class_weight * -probs[:, classes]
            + weights.mask_weight * pairwise_bce(pred, target)
            + weights.dice_weight * pairwise_dice(pred, target)
        )
    rows, cols = hungarian_match(cost)
    target_classes[rows] = classes[cols]
    ce = F.cross_entropy(logits, target_classes, weight=class_weight)
    matched_pred, matched_target = pred[rows], target[cols]
    return {
        "class": ce,
        "mask": bce_loss(matched_pred, matched_target).sum(),
        "dice": dice_loss(matched_pred, matched_target).sum(),
        "matched": torch.tensor(float(len(rows))),
    }


def interactive_loss(
    candidates: torch.Tensor, selection: torch.Tensor, target: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Loss of one prompted object.

    ``candidates [k, P]`` mask logits of the object's k candidate queries (at the target's pixels),
    ``selection [k]`` their selection logits, ``target [P]`` the object (0..1). The candidate with
    the lowest BCE + dice carries the mask terms and is the CE target of the selection; returns
    ``mask``, ``dice``, ``selection`` and ``best`` (its index).
    """
    targets = target[None].expand_as(candidates)
    bce, dice = bce_loss(candidates, targets), dice_loss(candidates, targets)
    best = int((bce + dice).detach().argmin())
    ce = F.cross_entropy(selection[None], torch.tensor([best], device=selection.device))
    return {"mask": bce[best], "dice": dice[best], "selection": ce, "best": torch.tensor(best)}


def grounding_loss(
    masks: torch.Tensor,
    similarity: torch.Tensor,
    targets: torch.Tensor,
    weights: LossWeights,
    num_points: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Loss of one text on one image.

    ``masks [Q, h, w]`` grounding-query mask logits, ``similarity [Q]`` their (scaled) similarity to
    the text, ``targets [G, h, w]`` the instances the text names (G >= 1). The (query, instance)
    pair of lowest ``mask_weight * BCE + dice_weight * dice - class_weight * softmax(similarity)``
    carries the mask terms, and its query is the CE target over ``similarity``.
    """
    index = sample_pixels(masks[0].numel(), num_points, generator, masks.device)
    pred, target = _flat(masks, index), _flat(targets, index)
    with torch.no_grad():
        cost = (
            weights.mask_weight * pairwise_bce(pred, target)
            + weights.dice_weight * pairwise_dice(pred, target)
            - weights.class_weight * similarity.softmax(-1)[:, None]
        )
        flat = int(cost.argmin())
    query, instance = divmod(flat, cost.shape[1])
    ce = F.cross_entropy(similarity[None], torch.tensor([query], device=similarity.device))
    return {
        "mask": bce_loss(pred[query : query + 1], target[instance : instance + 1])[0],
        "dice": dice_loss(pred[query : query + 1], target[instance : instance + 1])[0],
        "selection": ce,
    }


def total(terms: dict[str, torch.Tensor], weights: LossWeights, task_weight: float) -> torch.Tensor:
    """``task_weight * (mask_weight * mask + dice_weight * dice + class/selection terms)``."""
    value = weights.mask_weight * terms["mask"] + weights.dice_weight * terms["dice"]
    if "class" in terms:
        value = value + weights.class_weight * terms["class"]
    if "selection" in terms:
        value = value + weights.selection_weight * terms["selection"]
    return task_weight * value

