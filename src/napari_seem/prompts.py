"""Prompts as plain data (no torch, no napari), and their conversion to SEEM's prompt masks.

All coordinates are image pixel coordinates ``(y, x)`` = (row, column) of the 2D plane the prompt
belongs to. One object's prompts are gathered in :class:`ObjectPrompt`; :func:`rasterize` turns them
into the positive and negative boolean masks SEEM's visual sampler consumes, following the official
conventions: a click is a 3x3 square (the checkpoints' training/eval dilation), a scribble is its
polyline drawn with its width, a mask is used as is, a box is its filled rectangle.

Invalid prompts raise :class:`PromptError` naming the prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

CLICK_SIZE = 3  # official STROKE_SAMPLER.DILATION: each click is a 3x3 square


class PromptError(ValueError):
    """A prompt that cannot be used on this image (outside it, empty, not finite, degenerate)."""


@dataclass(frozen=True)
class Point:
    y: float
    x: float
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """Axis-aligned box from ``(y0, x0)`` to ``(y1, x1)`` (inclusive pixel corners, any order)."""

    y0: float
    x0: float
    y1: float
    x1: float


@dataclass(frozen=True)
class Scribble:
    """A polyline through ``points`` (``[(y, x), ...]``) drawn ``width`` pixels wide."""

    points: tuple[tuple[float, float], ...]
    width: float = 3.0
    positive: bool = True


@dataclass(frozen=True, eq=False)
class MaskPrompt:
    """A boolean mask of the plane's shape."""

    mask: np.ndarray
    positive: bool = True


@dataclass(frozen=True, eq=False)
class ReferenceRegion:
    """"Find objects like this one": a region ``mask`` on a reference ``image`` (an array, or a frame
    index of the series being segmented)."""

    image: np.ndarray | int
    mask: np.ndarray


@dataclass
class ObjectPrompt:
    """Everything the user said about one object on one plane."""

    points: list[Point] = field(default_factory=list)
    boxes: list[Box] = field(default_factory=list)
    scribbles: list[Scribble] = field(default_factory=list)
    masks: list[MaskPrompt] = field(default_factory=list)
    text: str | None = None
    reference: ReferenceRegion | None = None

    @property
    def has_visual(self) -> bool:
        return bool(self.points or self.boxes or self.scribbles or self.masks)

    def is_empty(self) -> bool:
        return not (self.has_visual or self.text or self.reference is not None)


def _check_yx(y: float, x: float, shape: tuple[int, int], what: str) -> None:
    if not (math.isfinite(y) and math.isfinite(x)):
        raise PromptError(f"{what}: coordinates must be finite numbers, got (y={y}, x={x})")
    height, width = shape
    if not (-0.5 <= y < height - 0.5 and -0.5 <= x < width - 0.5):
        raise PromptError(f"{what}: (y={y:g}, x={x:g}) is outside the {height}x{width} image")


def validate(prompt: ObjectPrompt, shape: tuple[int, int]) -> None:
    """Raise :class:`PromptError` for anything unusable in ``prompt`` on a plane of ``shape`` (H, W)."""
    if prompt.is_empty():
        raise PromptError("empty prompt: give at least one point, box, scribble, mask, text or reference")
    for point in prompt.points:
        _check_yx(point.y, point.x, shape, repr(point))
    for box in prompt.boxes:
        _check_yx(box.y0, box.x0, shape, repr(box))
        _check_yx(box.y1, box.x1, shape, repr(box))
        if round(box.y0) == round(box.y1) or round(box.x0) == round(box.x1):
            raise PromptError(f"{box!r}: a box needs a non-zero height and width")
    for scribble in prompt.scribbles:
        if len(scribble.points) == 0:
            raise PromptError(f"{scribble!r}: a scribble needs at least one point")
        if not (math.isfinite(scribble.width) and scribble.width > 0):
            raise PromptError(f"{scribble!r}: width must be a positive number")
        for y, x in scribble.points:
            _check_yx(y, x, shape, f"Scribble point (y={y}, x={x})")
    for mask in prompt.masks:
        _check_mask(mask.mask, shape, "MaskPrompt")
    if prompt.text is not None and not prompt.text.strip():
        raise PromptError("text prompt is blank")
    if prompt.reference is not None:
        ref = prompt.reference
        ref_shape = shape if isinstance(ref.image, (int, np.integer)) else np.asarray(ref.image).shape[:2]
        _check_mask(ref.mask, tuple(ref_shape), "ReferenceRegion")


def _check_mask(mask: np.ndarray, shape: tuple[int, int], what: str) -> None:
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise PromptError(f"{what}: mask shape {mask.shape} does not match the image plane {tuple(shape)}")
    if not mask.any():
        raise PromptError(f"{what}: the mask is empty")


def rasterize(prompt: ObjectPrompt, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative prompt masks (bool ``[H, W]``) of one object's visual prompts."""
    validate(prompt, shape)
    pos = np.zeros(shape, dtype=bool)
    neg = np.zeros(shape, dtype=bool)
    for point in prompt.points:
        _draw_click(pos if point.positive else neg, point.y, point.x)
    for box in prompt.boxes:
        pos |= box_mask(box, shape)
    for scribble in prompt.scribbles:
        _draw_polyline(pos if scribble.positive else neg, scribble.points, scribble.width)
    for mask in prompt.masks:
        target = pos if mask.positive else neg
        target |= np.asarray(mask.mask, dtype=bool)
    return pos, neg


def _draw_click(canvas: np.ndarray, y: float, x: float) -> None:
    r = CLICK_SIZE // 2
    cy, cx = int(round(y)), int(round(x))
    canvas[max(cy - r, 0) : cy + r + 1, max(cx - r, 0) : cx + r + 1] = True


def box_mask(box: Box, shape: tuple[int, int]) -> np.ndarray:
    """Filled box as a bool mask of ``shape``."""
    y0, y1 = sorted((int(round(box.y0)), int(round(box.y1))))
    x0, x1 = sorted((int(round(box.x0)), int(round(box.x1))))
    mask = np.zeros(shape, dtype=bool)
    mask[max(y0, 0) : y1 + 1, max(x0, 0) : x1 + 1] = True
    return mask


def _draw_polyline(canvas: np.ndarray, points: Sequence[tuple[float, float]], width: float) -> None:
    from skimage.draw import disk, line

    height, width_px = canvas.shape
    radius = max(width / 2.0, 0.5)
    ys, xs = [], []
    pts = [(int(round(y)), int(round(x))) for y, x in points]
    if len(pts) == 1:
        ys, xs = [np.array([pts[0][0]])], [np.array([pts[0][1]])]
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        rr, cc = line(y0, x0, y1, x1)
        ys.append(rr)
        xs.append(cc)
    centre = np.zeros_like(canvas)
    centre[np.concatenate(ys), np.concatenate(xs)] = True
    if radius <= 0.5:
        canvas |= centre
        return
    # Thicken the 1-px line with a disk footprint of the requested width.
    from scipy.ndimage import binary_dilation

    rr, cc = disk((math.ceil(radius), math.ceil(radius)), radius + 1e-6)
    size = 2 * math.ceil(radius) + 1
    footprint = np.zeros((size, size), dtype=bool)
    footprint[rr, cc] = True
    canvas |= binary_dilation(centre, structure=footprint)
