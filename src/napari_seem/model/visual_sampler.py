"""Visual sampler: prompt masks -> sampled points -> prompt embeddings and per-level point tokens.

A visual prompt (click, scribble, box, mask) arrives as a boolean mask per object at the padded image
resolution. Up to ``max_len`` pixels are taken from it; image features are sampled bilinearly at
those pixels (``grid_sample``, ``align_corners=True``, pixel ``(y, x)`` -> normalised ``(x/Wp, y/Hp)``,
the official convention: the divisor is the padded size, not size - 1).

Randomness: the official code draws the subset with ``torch.multinomial`` on the global generator.
Here every draw takes an explicit ``torch.Generator``; when a prompt has at most ``max_len`` pixels all
of them are used in row-major order and nothing is drawn, which is what the official code returns too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class VisualPrompt:
    """A visual prompt encoded against one image's features (the official 'refimg' tokens).

    ``pos_embedding``/``neg_embedding``: ``[B, N, C]`` mean of the mask features at the positive /
    negative points of each of the N prompt objects (v0/demo: N = 1, all masks merged).
    ``tokens``: per decoder level ``[P, B, C]`` point tokens (positives then negatives, with the
    positive/negative indicator added). ``padding``: per level bool ``[B, P]``. ``object_index``: per
    level long ``[B, P]``, the prompt object of each token (-1 for padding).
    """

    pos_embedding: torch.Tensor
    neg_embedding: torch.Tensor
    tokens: list[torch.Tensor]
    padding: list[torch.Tensor]
    object_index: list[torch.Tensor]

    @property
    def num_objects(self) -> int:
        return self.pos_embedding.shape[1]


def sample_points(
    masks: torch.Tensor,
    max_len: int,
    per_object: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick prompt pixels from ``masks [N, Hp, Wp]`` (bool).

    Returns float ``[k, 3]`` rows ``(object, y / Hp, x / Wp)``. ``per_object`` (v1): when there are more
    than ``max_len`` pixels, each object gets equal probability mass and ``object`` is its index; else
    (v0/demo) all masks are merged into one prompt (``object`` = 0) and a random subset is kept.
    """
    _, height, width = masks.shape
    nonzero = masks.nonzero()
    scale = torch.tensor([1.0, height, width], device=masks.device)
    if not per_object:
        nonzero[:, 0] = 0
    count = nonzero.shape[0]
    if count > max_len:
        keep = _subsample(nonzero[:, 0], max_len, per_object, generator)
        nonzero = nonzero[keep]
    return nonzero.float() / scale


def _subsample(object_ids: torch.Tensor, max_len: int, per_object: bool, generator) -> torch.Tensor:
    if not per_object:
        # v0/demo: torch.randperm(N)[:max_len], unsorted.
        return torch.randperm(object_ids.numel(), generator=generator, device="cpu")[:max_len].to(object_ids.device)
    counts = torch.bincount(object_ids)
    present = (counts > 0).sum()
    prob = 1.0 / (present * counts[object_ids]).float()
    keep = torch.multinomial(prob.cpu(), max_len, replacement=False, generator=generator)
    return keep.sort().values.to(object_ids.device)


def sample_features(features: torch.Tensor, points_yx: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``features [B, C, H, W]`` at normalised ``points_yx [B, P, 2]`` -> ``[B, P, C]``."""
    grid = points_yx.flip(-1).to(features.dtype)[:, :, None, :] * 2.0 - 1.0
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled[..., 0].transpose(1, 2)


def pad_points(points: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-image ``[k_b, 3]`` point lists into ``[B, P, 3]`` padded with -1, and the padding ``[B, P]``."""
    length = max((p.shape[0] for p in points), default=0)
    out = points[0].new_full((len(points), length, 3), -1.0)
    for b, p in enumerate(points):
        out[b, : p.shape[0]] = p
    return out, out.sum(-1) < 0


def mean_embeddings(
    mask_features: torch.Tensor,
    points: list[torch.Tensor],
    num_objects: int,
    empty_value: float,
) -> torch.Tensor:
    """Mean mask feature per prompt object: ``[B, N, C]``; an object with no point gets ``empty_value``."""
    batch, channels = mask_features.shape[:2]
    out = mask_features.new_full((batch, num_objects, channels), empty_value)
    padded, _ = pad_points(points)
    if padded.shape[1] == 0:
        return out
    sampled = sample_features(mask_features, padded[..., 1:])  # [B, P, C]
    for b, pts in enumerate(points):
        ids = pts[:, 0].long()
        for n in range(num_objects):
            chosen = ids == n
            if bool(chosen.any()):
                out[b, n] = sampled[b, : pts.shape[0]][chosen].mean(0)
    return out


def level_tokens(
    level_features: torch.Tensor,
    projection: torch.Tensor,
    pos_points: list[torch.Tensor],
    neg_points: list[torch.Tensor],
    indicator: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Point tokens of one decoder level.

    ``level_features [B, C, H, W]`` (decoder memory with its level embedding), ``projection [C, C]``
    (``mask_sptial_embed[level]``), ``indicator [2, C]`` (positive row 0, negative row 1).
    Returns ``tokens [P, B, C]``, ``padding [B, P]`` and ``object_index [B, P]``.
    Sampling before projecting is exact: bilinear sampling is linear.
    """
    merged = [torch.cat([p, n]) for p, n in zip(pos_points, neg_points)]
    padded, padding = pad_points(merged)
    # Padded points sample the top-left pixel, as the official code does; they are masked later.
    coords = padded[..., 1:].masked_fill(padding[..., None], 0.0)
    tokens = sample_features(level_features, coords) @ projection  # [B, P, C]
    sign = torch.zeros(padding.shape, device=tokens.device)
    for b, (p, n) in enumerate(zip(pos_points, neg_points)):
        sign[b, : p.shape[0]] = 1
        sign[b, p.shape[0] : p.shape[0] + n.shape[0]] = -1
    tokens = tokens + (sign == 1)[..., None] * indicator[0] + (sign == -1)[..., None] * indicator[1]
    object_index = padded[..., 0].long().masked_fill(padding, -1)
    return tokens.transpose(0, 1), padding, object_index
