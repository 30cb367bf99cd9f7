"""Propagation steps from still images: a crop and a moved copy of it as two frames.

Propagation (:mod:`~napari_seem.engine.video_steps`) decodes an object on frame ``t`` from its mask
on frame ``t - 1``: the mask is a visual prompt pooled from frame ``t - 1``'s features (a reference
region) and, as logits, the memory prompt. The interactive task never trains that: its prompts and
its memory always come from the image being decoded. A *pseudo-video* step trains it from the
still training crops (the way video object segmentation models are pre-trained on images):

* the "next frame" is the crop under a random smooth motion (an affine map, up to ``shift`` of the
  crop, ``rotation`` degrees and ``scale``, plus a coarse random displacement field of up to
  ``wobble`` of the crop, so that neighbouring objects move differently), a random gain and a
  defocus blur on some frames (slices of a z-stack differ by focus);
* each prompted object's source-frame prompt is its mask roughened as a previous answer is
  (:func:`~napari_seem.training.simulate.simulate_mask`), pooled from the source frame's features,
  and the same mask is the memory (``GIVEN_LOGIT`` logits, as a known mask enters a propagation);
* the target is the object's moved mask, scored with the interactive loss (mask, dice, selection).

Objects that the motion carries mostly out of the crop (less than half of their area left) are not
prompted. The source frame is encoded without gradients (inference never trains it either).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.engine.carry import GIVEN_LOGIT
from napari_seem.model import SeemModel

from .data import Batch
from .simulate import simulate_mask, thin


@dataclass(frozen=True)
class Motion:
    """How far the pseudo next frame moves (see the module docstring). ``blur``: the largest
    defocus (Gaussian sigma, pixels), drawn on ``blur_fraction`` of the frames; ``gain``: intensity
    factor range."""

    shift: float = 0.05
    rotation: float = 10.0
    scale: float = 0.1
    wobble: float = 0.02
    blur: float = 1.5
    blur_fraction: float = 0.3
    gain: tuple[float, float] = (0.85, 1.15)


@dataclass
class FramePair:
    """``source``/``target``: float ``[B, 3, S, S]`` 0..255 images; per image bool numpy
    ``[N, S, S]`` source and target masks of the same N prompted objects."""

    source: torch.Tensor
    target: torch.Tensor
    source_masks: list[np.ndarray]
    target_masks: list[np.ndarray]


def motion_grid(size: int, motion: Motion, rng: np.random.Generator) -> torch.Tensor:
    """A ``grid_sample`` grid ``[1, S, S, 2]`` (x, y in -1..1): where each target pixel comes from."""
    angle = math.radians(rng.uniform(-motion.rotation, motion.rotation))
    zoom = 1.0 + rng.uniform(-motion.scale, motion.scale)
    tx, ty = rng.uniform(-2 * motion.shift, 2 * motion.shift, size=2)  # -1..1 spans the crop: 2x
    cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
    theta = torch.tensor([[[cos, -sin, tx], [sin, cos, ty]]], dtype=torch.float32)
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
    if motion.wobble > 0:
        coarse = torch.from_numpy(rng.uniform(-2 * motion.wobble, 2 * motion.wobble, size=(1, 2, 4, 4))).float()
        field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)
        grid = grid + field.permute(0, 2, 3, 1)
    return grid


def _blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """``image [3, S, S]`` under a separable Gaussian of ``sigma`` pixels (edges replicated)."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(image)
    out = F.pad(image[:, None], (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1))
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1))[:, 0]


def make_pair(batch: Batch, num_objects: int, motion: Motion, rng: np.random.Generator) -> FramePair | None:
    """Each image of ``batch`` and its moved copy, with ``num_objects`` objects per image (repeated
    when an image has fewer) that keep at least half their area in the moved crop. ``None`` when an
    image has no such object."""
    size = batch.images.shape[-1]
    targets, source_masks, target_masks = [], [], []
    for image, masks in zip(batch.images, batch.masks):
        grid = motion_grid(size, motion, rng).to(image.device)
        # The moved-out border shows the crop's mean (a neutral value, as the crops' own padding).
        mean = image.mean(dim=(1, 2), keepdim=True)
        moved = F.grid_sample((image - mean)[None], grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)[0] + mean
        if rng.random() < motion.blur_fraction:
            moved = _blur(moved, rng.uniform(0.5, motion.blur))
        moved = (moved * rng.uniform(*motion.gain)).clamp(0, 255)
        warped = F.grid_sample(masks[:, None].float(), grid.expand(masks.shape[0], -1, -1, -1), mode="nearest",
                               padding_mode="zeros", align_corners=False)[:, 0] > 0.5
        before, after = masks.flatten(1).sum(1), warped.flatten(1).sum(1)
        keep = torch.nonzero(after >= 0.5 * before).flatten().cpu().numpy()
        if keep.size == 0:
            return None
        chosen = rng.permutation(keep)[:num_objects]
        chosen = np.resize(chosen, num_objects)  # repeated when fewer: v1 decodes the same N per image
        targets.append(moved)
        source_masks.append(masks[chosen].cpu().numpy())
        target_masks.append(warped[chosen].cpu().numpy())
    return FramePair(batch.images, torch.stack(targets), source_masks, target_masks)


def memory_logits(masks: list[np.ndarray], size: tuple[int, int], device) -> torch.Tensor:
    """The memory prompt of known masks: ``GIVEN_LOGIT * (2 * share - 1)`` on the ``size`` grid,
    ``share`` each cell's part inside the mask (as :func:`~napari_seem.engine.carry.given_mask_result`):
    float ``[B, N, h, w]``."""
    stacked = torch.from_numpy(np.stack(masks)).float().to(device)  # [B, N, S, S]
    share = F.adaptive_avg_pool2d(stacked, size)
    return GIVEN_LOGIT * (2 * share - 1)


def pseudo_video_decode(model: SeemModel, pair: FramePair, num_objects: int, max_points: int | None,
                        rng: np.random.Generator, generator: torch.Generator, keep_aux: bool):
    """Decode the pair's target frame from its source frame: returns ``(decoder output, visual prompt)``;
    the output's spatial queries answer the prompted objects, in order."""
    with torch.no_grad():
        source = model.encode(pair.source)
    target = model.encode(pair.target)
    rough = [np.stack([simulate_mask(m, rng) for m in masks]) for masks in pair.source_masks]
    device = target.mask_features.device
    pos = [torch.from_numpy(np.stack([thin(m, max_points, rng) for m in masks])).to(device) for masks in rough]
    neg = [torch.zeros_like(p) for p in pos]
    spatial = model.predictor.encode_visual_prompt(source.memory, pos, neg, model.layout, generator)
    memory = memory_logits(rough, tuple(target.mask_features.shape[-2:]), device)
    count = model.cfg.decoder.queries_per_prompt * num_objects
    indices = torch.randint(0, model.cfg.decoder.num_queries, (count,), generator=generator)
    out = model.decode(target, spatial=spatial, prev_mask=memory, spatial_query_indices=indices,
                       include_object_queries=False, keep_aux=keep_aux)
    return out, spatial
