"""Is a propagated object still there? Signals the model already gives, and the rule over them.

SEEM has no "is the object still here" output: asked for an object, it always answers with some
mask. This module measures, for each object on each propagation step, what the decode says anyway
(:class:`PresenceSignals`), and decides presence from them (:func:`decide`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PresenceSignals:
    """One object on one frame, from its decode (logits at the model's 1/4 resolution).

    ``peak``/``mean``: the largest and the mean mask logit inside the mask (logit > 0 cells; the
    peak of the whole map when there are none). ``area``: mask pixels at the plane's resolution.
    ``iou``: IoU with the object's previous mask. ``similarity``: cosine of the mean pixel-decoder
    feature inside the mask with the object's on its anchor frame (1 when there is no anchor).
    ``similarity`` and ``looks`` are NaN unless the session's ``detailed_signals`` is on.
    ``looks``: the mean appearance score (:mod:`~napari_seem.engine.appearance`) over the mask's
    cells over the anchor's own mean, ``TARGET_LOGIT`` (1: as like the object as on its anchor
    frame; 0: undecided; < 0: like its surroundings; 1 when it has no appearance).
    ``area_ratio``: area over the object's area on its anchor frame (1 when unknown).
    ``contrast``: the mask's :func:`contrast` over the object's on its anchor frame (1: stands out
    as much as there; 0: not at all; 1 when unknown; NaN when neither the rule reads it nor the
    session's ``detailed_signals`` is on).
    """

    peak: float
    mean: float
    area: int
    iou: float
    similarity: float
    looks: float = 1.0
    area_ratio: float = 1.0
    contrast: float = 1.0

    def as_dict(self) -> dict[str, float]:
        return {"peak": self.peak, "mean": self.mean, "area": self.area, "iou": self.iou,
                "similarity": self.similarity, "looks": self.looks, "area_ratio": self.area_ratio,
                "contrast": self.contrast}


@dataclass
class Track:
    """What the rule remembers of one object along one propagation pass: the highest (``peak``) and
    the lowest (``low``) contrast ratio of the frames it was kept on (its anchor frame's is 1)."""

    peak: float = 1.0
    low: float = 1.0

    def keep(self, s: PresenceSignals) -> None:
        if s.contrast == s.contrast:  # not NaN (not measured)
            self.peak, self.low = max(self.peak, s.contrast), min(self.low, s.contrast)


@dataclass(frozen=True)
class PresenceRule:
    """When a carried object *misses* a frame (is taken to be absent there), beyond the session's own
    ``lost_iou``/``lost_score``/empty-mask test, and how many misses in a row it survives.

    ``min_contrast``: miss when the mask's contrast (``PresenceSignals.contrast``, relative to the
    anchor frame) falls below this share of the track's peak so far (``None``: not used).
    ``refocus``: once the track has faded to below half of its peak, miss when the contrast rises
    again to more than this many times its lowest (``None``: not used). ``min_iou``: miss when the
    mask overlaps the object's previous mask less than this. ``gap``: an object that misses at most
    this many frames in a row and is found again is the same object (the missed frames get no
    mask); one more miss and it is lost, carried no further in that direction.
    """

    min_contrast: float | None = None
    refocus: float | None = None
    min_iou: float = 0.0
    gap: int = 0

    @property
    def reads_contrast(self) -> bool:
        return self.min_contrast is not None or self.refocus is not None

    def misses(self, s: PresenceSignals, track: Track | None = None) -> bool:
        track = track or Track()
        if self.min_contrast is not None and s.contrast < self.min_contrast * track.peak:
            return True
        if self.refocus is not None and track.low < 0.5 * track.peak and s.contrast > self.refocus * track.low:
            return True
        return s.iou < self.min_iou


STACK_KINDS = ("time", "z")
# z: a nucleus is in focus on its brightest slice and fades out of focus towards both ends: below a
# quarter of its peak contrast it has ended; once faded, a contrast that doubles again is another
# nucleus coming into focus under the mask; a mask that moved off half of the previous one is not it.
RULES = {"time": PresenceRule(),
         "z": PresenceRule(min_contrast=0.25, refocus=2.0, min_iou=0.5, gap=1)}


def mean_feature(mask_features: torch.Tensor, logits: torch.Tensor) -> torch.Tensor | None:
    """Mean of ``mask_features [1, C, h, w]`` over the cells where ``logits [h, w] > 0`` (``[C]``,
    unit length), or ``None`` when there are none."""
    cells = logits > 0
    rows, cols = torch.nonzero(cells.any(dim=1)).flatten(), torch.nonzero(cells.any(dim=0)).flatten()
    if not len(rows):
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1  # gather in the box only
    feature = mask_features[0, :, y0:y1, x0:x1][:, cells[y0:y1, x0:x1]].mean(dim=1)
    return feature / feature.norm().clamp_min(1e-6)


def signals(logits: torch.Tensor, mask: np.ndarray, previous: np.ndarray, mask_features: torch.Tensor,
            anchor: torch.Tensor | None, looks: torch.Tensor | None = None,
            anchor_area: int | None = None, contrast_ratio: float = 1.0, detailed: bool = True) -> PresenceSignals:
    """The :class:`PresenceSignals` of one object's answer (``logits [h, w]``, plane ``mask``)
    against its ``previous`` plane mask, its anchor feature (``[C]`` unit, or ``None``), its
    appearance score ``looks`` (``[h, w]`` logit units, or ``None``) and its anchor's area.
    Without ``detailed``, ``similarity`` and ``looks`` (which no rule reads: they did not tell
    present from absent, docs/propagation.md) are NaN: half the cost on many objects."""
    from .appearance import TARGET_LOGIT
    from .conversion import mask_iou

    cells = logits > 0
    inside = logits[cells] if bool(cells.any()) else logits.flatten()
    similarity = like = float("nan")
    if detailed:
        similarity = like = 1.0
    if detailed and anchor is not None:
        feature = mean_feature(mask_features, logits)
        similarity = 0.0 if feature is None else float(feature @ anchor)
    area = int(np.count_nonzero(mask))
    if detailed and looks is not None:
        like = float(looks[cells].mean()) / TARGET_LOGIT if bool(cells.any()) else float(looks.max()) / TARGET_LOGIT
    ratio = area / anchor_area if anchor_area else 1.0
    return PresenceSignals(float(inside.max()), float(inside.mean()), area, mask_iou(mask, previous), similarity,
                           like, ratio, contrast_ratio)


RING = 0.35  # the ring of :func:`contrast`, in object radii (at least 2 pixels or cells)


def contrast(gray: np.ndarray, mask: np.ndarray) -> float:
    """How much a mask stands out of its surroundings: mean of ``gray`` (``[h, w]``, pixels or the
    session's logit cells) inside the bool ``mask`` (same shape) minus its mean in the ring of
    ``max(2, RING * radius)`` pixels around it (``radius``: the mask's equivalent-disk radius). 0 for
    an empty mask or ring."""
    from scipy.ndimage import binary_dilation

    if not mask.any():
        return 0.0
    width = max(2, int(round(RING * np.sqrt(np.count_nonzero(mask) / np.pi))))
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    y0, y1 = max(rows[0] - width, 0), min(rows[-1] + width + 1, mask.shape[0])
    x0, x1 = max(cols[0] - width, 0), min(cols[-1] + width + 1, mask.shape[1])
    window, values = mask[y0:y1, x0:x1], gray[y0:y1, x0:x1]
    ring = binary_dilation(window, iterations=width) & ~window
    if not ring.any():
        return 0.0
    return float(values[window].mean() - values[ring].mean())
