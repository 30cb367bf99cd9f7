"""Simulated visual prompts for interactive training: clicks, scribbles, boxes and masks.

Each function takes one object's ground-truth mask (bool ``[H, W]``, non-empty) and a numpy
``Generator`` and returns the positive prompt mask, drawn the way the predictor draws prompts
(``prompts.rasterize``: a click is a 3x3 square, a scribble a 3 px polyline, a box its filled
rectangle). Corrective clicks of later rounds use :func:`napari_seem.evaluation.clicks.next_click`,
the evaluation protocol itself, so training sees the clicks the evaluation will make.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion

from napari_seem.evaluation.clicks import Click, inner_distance
from napari_seem.prompts import ObjectPrompt, Point, Scribble, rasterize

PROMPT_KINDS = ("click", "scribble", "box", "mask")


def click_mask(click: Click, shape: tuple[int, int]) -> np.ndarray:
    """Bool ``shape`` with the click's 3x3 square (the predictor's rasterisation of a point)."""
    return rasterize(ObjectPrompt(points=[Point(click.y, click.x)]), shape)[0]


def _distance(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The inner distance of ``mask`` on its bounding box (exact there, and much cheaper than on
    the whole crop), and the box's top-left corner."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return inner_distance(box), (int(rows[0]), int(cols[0]))


def _interior_points(mask: np.ndarray, rng: np.random.Generator, count: int, depth: float) -> np.ndarray:
    """``count`` random pixels ``[count, 2]`` (y, x) of ``mask`` at least ``depth`` x the largest
    inner distance away from its boundary (deep points: users click inside objects, not on edges)."""
    distance, (y0, x0) = _distance(mask)
    ys, xs = np.nonzero(distance >= depth * distance.max())
    chosen = rng.integers(0, ys.size, size=count)
    return np.stack([ys[chosen] + y0, xs[chosen] + x0], axis=1)


def simulate_click(mask: np.ndarray, rng: np.random.Generator, centre_probability: float = 0.5) -> np.ndarray:
    """A positive click: the evaluation's first click (farthest from the boundary) with
    ``centre_probability``, else a random pixel in the deeper half of the object."""
    if rng.random() < centre_probability:
        distance, (y0, x0) = _distance(mask)
        y, x = np.unravel_index(int(distance.argmax()), distance.shape)
        y, x = y + y0, x + x0
    else:
        y, x = _interior_points(mask, rng, 1, 0.5)[0]
    return click_mask(Click(int(y), int(x)), mask.shape)


def simulate_scribble(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 3 px polyline through 2-4 interior points, ordered along the object's main axis, kept
    inside the object; a click when the object is too thin to hold one."""
    points = _interior_points(mask, rng, int(rng.integers(2, 5)), 0.3).astype(float)
    centred = points - points.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0] if len(points) > 1 else np.array([1.0, 0.0])
    points = points[np.argsort(centred @ axis)]
    scribble = Scribble(tuple((float(y), float(x)) for y, x in points), width=3.0)
    drawn = rasterize(ObjectPrompt(scribbles=[scribble]), mask.shape)[0] & mask
    return drawn if drawn.any() else simulate_click(mask, rng)


def simulate_box(mask: np.ndarray, rng: np.random.Generator, jitter: float = 0.05) -> np.ndarray:
    """The object's bounding box, each side moved by up to ``jitter`` x its size (filled)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    dy, dx = rng.normal(0.0, jitter, 2) * height, rng.normal(0.0, jitter, 2) * width
    y0 = int(np.clip(round(rows[0] + dy[0]), 0, mask.shape[0] - 1))
    y1 = int(np.clip(round(rows[-1] + dy[1]), y0, mask.shape[0] - 1))
    x0 = int(np.clip(round(cols[0] + dx[0]), 0, mask.shape[1] - 1))
    x1 = int(np.clip(round(cols[-1] + dx[1]), x0, mask.shape[1] - 1))
    canvas = np.zeros(mask.shape, dtype=bool)
    canvas[y0 : y1 + 1, x0 : x1 + 1] = True
    return canvas


def simulate_mask(mask: np.ndarray, rng: np.random.Generator, max_radius: int = 2, max_shift: int = 2) -> np.ndarray:
    """The object's mask, eroded or dilated by up to ``max_radius`` px and shifted by up to
    ``max_shift`` px (a rough outline, e.g. the previous frame's mask)."""
    radius = int(rng.integers(-max_radius, max_radius + 1))
    out = mask
    if radius > 0:
        out = binary_dilation(mask, iterations=radius)
    elif radius < 0:
        out = binary_erosion(mask, iterations=-radius)
    shift = rng.integers(-max_shift, max_shift + 1, size=2)
    out = np.roll(out, tuple(int(s) for s in shift), axis=(0, 1))
    return out if out.any() else mask.copy()


def thin(mask: np.ndarray, max_points: int | None, rng: np.random.Generator) -> np.ndarray:
    """``mask`` with at most ``max_points`` of its pixels left, chosen at random (``None``: all): the
    decoder's self-attention cost grows with the square of a prompt's points."""
    if max_points is None:
        return mask
    ys, xs = np.nonzero(mask)
    out = mask.copy()
    if ys.size > max_points:
        drop = rng.permutation(ys.size)[max_points:]
        out[ys[drop], xs[drop]] = False
    return out


_SIMULATORS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "click": simulate_click,
    "scribble": simulate_scribble,
    "box": simulate_box,
    "mask": simulate_mask,
}


def simulate_prompt(mask: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The positive prompt mask (bool, the shape of ``mask``) of one simulated prompt of ``kind``."""
    if kind not in _SIMULATORS:
        raise ValueError(f"unknown prompt kind {kind!r}; known: {', '.join(PROMPT_KINDS)}")
    if not mask.any():
        raise ValueError("cannot prompt an empty mask")
    return _SIMULATORS[kind](np.asarray(mask, dtype=bool), rng)
