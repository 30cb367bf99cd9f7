"""How one propagation step builds an object's mask on the next frame (used by ``VideoSession``).

An object carried from frame ``t-1`` to ``t`` gets ``[h, w]`` logits at the model's 1/4 resolution
(``evidence``), the weighted sum of

* SEEM's own answer to the object's memory and reference-region prompt (``decoder_weight``);
* the object's appearance score (:mod:`~napari_seem.engine.appearance`): its foreground and
  background prototypes in SEEM's ``mask_features``, taken on its anchor frame (``appearance_weight``);
* the previous mask as a shape prior (``prior_weight``; docs/propagation.md has the figures),

held at ``CLIPPED_LOGIT`` at most outside the *reach* of its previous mask (the object moves less
than ``reach`` object radii per frame). With ``follow_motion``, the previous mask that the prior and
the reach are built from is first moved as the object's patch of the image moved
(:mod:`~napari_seem.engine.motion`), by at most that many object radii. Objects given as masks (a
painted or known object) are used as they are on their frame (:func:`given_mask_result`).

With ``calibrate``, an object given as a mask also sets its own threshold: a step from its frame
onto that same frame gives logits whose ``> 0`` region should be the given mask, and the offset that
makes it so best (:func:`calibration_offset`) is added to the object's logits on every frame carried
from there. The mask the user drew says where this object's outline lies, which the model's
threshold, trained on other images, does not know.

In a time-lapse a cell keeps its size from frame to frame, while a carried mask tends to shrink:
the prior holds it where the cell was and trims the side it moves towards, step after step. With
``keep_area``, an object whose mask would cover fewer logit cells than that share of its mask on
its anchor frame has its logits raised, by the smallest step that restores the share, at most
``max_offset`` (:func:`area_offset`). Not in z-stacks, where a nucleus does shrink towards its ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from napari_seem.model import ImageFeatures
from napari_seem.prompts import ObjectPrompt

from .appearance import Appearance, cell_share, dilate_cells, object_radius_cells, score, shape_prior
from .conversion import CLIPPED_LOGIT, resize_mask_nearest
from .image import PreparedImage
from .predictor import ObjectResult

DAUGHTER_SHARE = 0.3  # each daughter holds at least this share of the dividing mask's pixels (comparable halves)
GIVEN_LOGIT = 8.0  # memory logits of a given mask: +-this where its cells are fully in/out


@dataclass
class PropagationConfig:
    """How a step builds an object's mask (see the module docstring)."""

    decoder_weight: float = 3.0  # SEEM's answer (memory + reference prompt), in logits
    appearance_weight: float = 1.0  # the object's appearance score (engine.appearance), in logits
    reach: float = 0.5  # the new mask stays within this many object radii of the previous mask (0: anywhere)
    min_reach: int = 2  # ... and at least this many logit cells
    ring: float = 0.5  # the background prototype's ring, in object radii
    prior_weight: float = 4.0  # the previous mask as a prior (logits at its far inside / outside)
    prior_width: float = 0.3  # ... reached this many object radii from its edge
    exclusive: bool = True  # a pixel goes to the carried object with the highest logit only
    calibrate: bool = True  # a given mask sets its object's logit offset (calibration_offset)
    max_offset: float = 3.0  # ... of at most this size
    keep_area: float = 0.9  # time-lapses: logits raised (<= max_offset) to keep this share of the anchor's area
    follow_motion: float = 0.0  # > 0: the previous mask moved with the image (engine.motion), by <= this many radii


def evidence(config: PropagationConfig, decoded: torch.Tensor, previous: np.ndarray, app: Appearance | None,
             unit: torch.Tensor, features: ImageFeatures, prepared: PreparedImage
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``([h, w] logits, [h, w] appearance score or None)`` of one object on a frame: ``decoded``
    (``[h, w]``, the decoder's answer), its ``previous`` plane mask (bool ``[H, W]``), its anchor
    appearance ``app`` and the frame's ``unit`` features ``[C, h, w]``, ``features``, ``prepared``."""
    share = cell_share(previous, features, prepared)  # on the CPU: the prior is a numpy distance transform
    radius = object_radius_cells(share)
    device = decoded.device
    reach = dilate_cells(share > 0, max(config.min_reach, int(round(config.reach * radius)))).to(device)
    out = config.decoder_weight * decoded
    looks = None
    if app is not None and config.appearance_weight > 0:
        looks = score(unit, app, reach)
        out = out + config.appearance_weight * looks
    if config.prior_weight > 0:
        out = out + config.prior_weight * shape_prior(share, radius * config.prior_width).to(device)
    if config.reach > 0:
        out = torch.where(reach, out, out.clamp(max=CLIPPED_LOGIT))
    return out, looks


def area_offset(logits: torch.Tensor, cells: float, limit: float = 3.0, step: float = 0.25) -> float:
    """The smallest offset ``b`` in ``[0, limit]`` (a multiple of ``step``) for which ``logits + b > 0``
    covers at least ``cells`` cells of ``logits [h, w]``; ``limit`` when none does."""
    offsets = torch.arange(0.0, limit + step / 2, step, dtype=logits.dtype)
    counts = ((logits[None] + offsets[:, None, None].to(logits.device)) > 0).flatten(1).sum(1)
    enough = torch.nonzero(counts >= cells).flatten()
    return float(offsets[int(enough[0])]) if len(enough) else float(offsets[-1])


def calibration_offset(logits: torch.Tensor, target: torch.Tensor, limit: float = 3.0, step: float = 0.25,
                       tolerance: float = 0.02) -> float:
    """The smallest offset ``b`` in ``[-limit, limit]`` (a multiple of ``step``) for which
    ``logits + b > 0`` overlaps bool ``target`` (``[h, w]`` both) within ``tolerance`` of the best
    IoU: where the IoU hardly changes with ``b`` the offset is not moved for nothing. 0 for an empty
    target."""
    if not bool(target.any()):
        return 0.0
    offsets = torch.arange(-limit, limit + step / 2, step, dtype=logits.dtype)
    offsets = offsets[torch.argsort(offsets.abs(), stable=True)]  # 0 first, then +-step, ...
    masks = (logits[None] + offsets[:, None, None].to(logits.device)) > 0  # [K, h, w]
    target = target.to(logits.device)
    inter = (masks & target).flatten(1).sum(1)
    union = (masks | target).flatten(1).sum(1)
    iou = inter.float() / union.clamp(min=1).float()
    near = torch.nonzero(iou >= iou.max() - tolerance).flatten()
    return float(offsets[int(near[0])])  # the first of the near-best: the smallest |b|


def exclusive(evidence: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Each object's logits held at ``CLIPPED_LOGIT`` at most where another object's are higher and
    positive: one pixel, one object (touching cells do not spill into each other)."""
    ids = list(evidence)
    stack = torch.stack([evidence[o] for o in ids])  # [N, h, w]
    best = stack.argmax(dim=0)
    top = stack.max(dim=0).values
    out = {}
    for n, o in enumerate(ids):
        taken = (best != n) & (top > 0)
        out[o] = torch.where(taken, stack[n].clamp(max=CLIPPED_LOGIT), stack[n])
    return out


def only_masks(prompt: ObjectPrompt) -> np.ndarray | None:
    """The mask of a prompt that is positive masks and nothing else (a painted or known object), or None."""
    if prompt.points or prompt.boxes or prompt.scribbles or prompt.text or prompt.reference is not None:
        return None
    if not prompt.masks or not all(m.positive for m in prompt.masks):
        return None
    mask = np.zeros_like(prompt.masks[0].mask, dtype=bool)
    for m in prompt.masks:
        mask |= m.mask
    return mask if mask.any() else None


def given_mask_result(mask: np.ndarray, features: ImageFeatures, prepared: PreparedImage) -> ObjectResult:
    """A known mask as an :class:`ObjectResult`: the mask itself, and memory logits at the 1/4 grid
    that are ``GIVEN_LOGIT * (2 * share - 1)`` (``share``: the cell's part inside the mask at model
    resolution), which upsample back to the mask. Score 1."""
    import torch.nn.functional as F

    model = torch.zeros(features.padded_size)
    model[: prepared.model_shape[0], : prepared.model_shape[1]] = torch.from_numpy(
        resize_mask_nearest(mask, prepared.model_shape)).float()
    grid = features.mask_features.shape[-2:]
    share = F.adaptive_avg_pool2d(model[None, None], tuple(grid))[0, 0]
    return ObjectResult(np.asarray(mask, dtype=bool).copy(), GIVEN_LOGIT * (2 * share - 1), 1.0)


def daughters(mask: np.ndarray, previous: np.ndarray) -> list[np.ndarray]:
    """The daughters of a cell that divided: the connected parts (8-connected) of its new ``mask``
    that overlap its ``previous`` mask and hold at least ``DAUGHTER_SHARE`` of the mask each, when
    there are two or more (largest first); else ``[]``. Smaller parts are dropped."""
    from scipy.ndimage import label

    parts, count = label(mask, structure=np.ones((3, 3), bool))
    if count < 2:
        return []
    sizes = np.bincount(parts.ravel(), minlength=count + 1)
    touching = np.unique(parts[previous & mask])
    big = [n for n in touching if n and sizes[n] >= DAUGHTER_SHARE * sizes[1:].sum()]
    if len(big) < 2:
        return []
    return [parts == n for n in sorted(big, key=lambda n: -sizes[n])]
