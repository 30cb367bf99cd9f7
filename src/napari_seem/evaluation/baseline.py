"""The classical floor of the click protocol: scikit-image's random walker seeded from the clicks.

:class:`RandomWalkerPredictor` has the two methods the protocol needs (``set_image`` and
``predict``), so :func:`~napari_seem.evaluation.interactive.evaluate_interactive` runs it exactly
as it runs a model: the same objects, the same first click, each next click at its own largest
error. It works on the image as the engine prepares it (``prepare_image``: percentile stretch, long
side 512), in gray:

* the window: the clicks' bounding box (and the previous result's, from the second click on)
  grown by ``margin`` model pixels (half the window again once a previous result exists);
* seeds: positive clicks are the object (3x3 squares, as the engine draws them), negative clicks
  and the window's sides that cut the image are background;
* the answer: the random walker's object label, the connected parts touching a positive click,
  mapped back to the plane's resolution.

A window border as background is what a user of a classical tool does with one click: without it
one seed class alone fills the whole image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from napari_seem.engine.conversion import ObjectResult, resize_nearest
from napari_seem.engine.image import DEFAULT_TARGET_SIZE, prepare_image
from napari_seem.prompts import ObjectPrompt


class RandomWalkerPredictor:
    """Random walker segmentation from clicks (see the module docstring). ``beta``: the walker's
    edge penalty; ``margin``: window margin in model pixels. The defaults were the best one-click
    mean IoU of (beta 130, 1000, 5000, 20000) x (margin 8..96) on 4 objects per image of
    ``dsb2018_subset`` (margin 96: 0.636, 48: 0.621; scikit-image's default beta 130 with margin 32
    gave 0.33): the floor is a well-set classical tool, not a straw man. Margin 64 costs half of
    96's time per click."""

    name = "random walker (classical)"

    def __init__(self, beta: float = 5000.0, margin: int = 64, target_size: int = DEFAULT_TARGET_SIZE) -> None:
        self.beta = beta
        self.margin = margin
        self.target_size = target_size
        self.gray: np.ndarray | None = None
        self.original_shape: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray) -> None:
        prepared = prepare_image(image, None, None, self.target_size)
        self.gray = prepared.rgb.mean(0).astype(np.float64) / 255.0  # [H, W] model scale, 0..1
        self.original_shape = prepared.original_shape

    def predict(self, prompts: ObjectPrompt | Sequence[ObjectPrompt],
                previous: Sequence[ObjectResult | None] | None = None) -> list[ObjectResult]:
        if self.gray is None:
            raise RuntimeError("call set_image() before predict()")
        prompts = [prompts] if isinstance(prompts, ObjectPrompt) else list(prompts)
        previous = list(previous) if previous is not None else [None] * len(prompts)
        return [self._one(p, prev) for p, prev in zip(prompts, previous)]

    def _one(self, prompt: ObjectPrompt, previous: ObjectResult | None) -> ObjectResult:
        from scipy.ndimage import label as connected
        from skimage.segmentation import random_walker

        height, width = self.gray.shape
        sy, sx = height / self.original_shape[0], width / self.original_shape[1]
        points = [(min(int(p.y * sy), height - 1), min(int(p.x * sx), width - 1), p.positive) for p in prompt.points]
        if not any(positive for _, _, positive in points):
            raise ValueError("the random walker needs at least one positive click")
        ys = [y for y, _, _ in points]
        xs = [x for _, x, _ in points]
        margin = self.margin
        if previous is not None and previous.mask.any():
            small = resize_nearest(previous.mask.astype(np.uint8), (height, width)).astype(bool)
            rows, cols = np.flatnonzero(small.any(1)), np.flatnonzero(small.any(0))
            ys += [int(rows[0]), int(rows[-1])]
            xs += [int(cols[0]), int(cols[-1])]
            margin = max(margin, (max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1) // 2)
        y0, y1 = max(min(ys) - margin, 0), min(max(ys) + margin + 1, height)
        x0, x1 = max(min(xs) - margin, 0), min(max(xs) + margin + 1, width)
        window = self.gray[y0:y1, x0:x1]
        seeds = np.zeros(window.shape, dtype=np.int32)
        # The window's sides are background where the window cuts the image (the image's own edge
        # may run through the object); all four when that leaves none.
        cut = (y0 > 0, y1 < height, x0 > 0, x1 < width)
        sides = cut if any(cut) else (True,) * 4
        for side, index in zip(sides, ((0, slice(None)), (-1, slice(None)), (slice(None), 0), (slice(None), -1))):
            if side:
                seeds[index] = 2
        for y, x, positive in points:
            seeds[max(y - y0 - 1, 0) : y - y0 + 2, max(x - x0 - 1, 0) : x - x0 + 2] = 1 if positive else 2
        if (seeds == 2).all() or not (seeds == 1).any():
            walked = seeds == 1
        else:
            walked = random_walker(window, seeds, beta=self.beta, mode="bf") == 1
        parts, _ = connected(walked)
        touched = {int(parts[y - y0, x - x0]) for y, x, positive in points if positive} - {0}
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = np.isin(parts, list(touched))
        full = resize_nearest(mask.astype(np.uint8), self.original_shape).astype(bool)
        return ObjectResult(full, torch.zeros(1, 1), 1.0)


# ---------------------------------------------------------------------------------------- propagation
class RandomWalkerSession:
    """The classical floor of propagation: each object's mask on frame ``t`` is scikit-image's random
    walker on frame ``t``, seeded from its mask on the frame before (ours).

    It has the interface the propagation protocol drives (``add_objects``, ``propagate``,
    ``results``, ``lost``; :func:`~napari_seem.evaluation.propagation.evaluate_propagation`), so it
    runs on exactly the objects, prompts and frames the model does. One step, per object, in a window
    around its previous mask ``M`` (radius ``r = sqrt(area / pi)``):

    * object seeds: ``M`` eroded by ``max(1, erode * r)`` pixels (what surely stays inside);
    * background seeds: everything farther than ``max(2, dilate * r)`` pixels from ``M`` (what the
      object cannot reach in one step), and the other objects' eroded previous masks;
    * the answer: the walker's object label, its connected part with the most object seeds.

    An object is lost, and carried no further in that direction, when its eroded mask is empty (it
    shrank away) or when its contrast (mean gray inside the mask minus the mean in the ring of
    ``dilate * r`` around it) falls below ``min_contrast`` times its contrast on the prompted
    frame: the end of a nucleus in z, where the walker would otherwise split the noise forever
    (``None``: no contrast rule, the choice for phase contrast, where a cell's mean against its
    ring flips sign from frame to frame: on the T98G time-lapse any threshold lost 24 of 28 cells).
    Frames are gray, stretched between
    their 1st and 99.8th percentiles. A click prompt is answered by :class:`RandomWalkerPredictor`.
    """

    name = "random walker propagation (classical)"

    def __init__(self, frames, beta: float = 5000.0, erode: float = 0.25, dilate: float = 0.35,
                 min_contrast: float | None = 0.15, click_predictor: RandomWalkerPredictor | None = None) -> None:
        self.frames = frames
        self.beta = beta
        self.erode = erode
        self.dilate = dilate
        self.min_contrast = min_contrast
        self.contrast: dict[int, float] = {}  # object -> its contrast on the prompted frame
        self.click_predictor = click_predictor or RandomWalkerPredictor(beta=beta)
        self.num_frames = len(frames)
        self.results: dict[int, dict[int, ObjectResult]] = {}
        self.lost: dict[int, set[int]] = {}
        self.prompted_frames: dict[int, int] = {}

    def add_objects(self, frame: int, prompts) -> dict[int, ObjectResult]:
        out = {}
        for object_id, prompt in prompts.items():
            if prompt.masks and not prompt.points:
                mask = np.zeros(np.shape(self.frames[frame])[:2], bool)
                for m in prompt.masks:
                    mask = mask | m.mask if m.positive else mask & ~m.mask
            else:
                self.click_predictor.set_image(np.asarray(self.frames[frame]))
                mask = self.click_predictor.predict(prompt)[0].mask
            out[object_id] = ObjectResult(mask, torch.zeros(1, 1), 1.0)
            self.contrast[object_id] = self._contrast(_stretch(np.asarray(self.frames[frame])), mask)
            self.results.setdefault(frame, {})[object_id] = out[object_id]
            self.prompted_frames[object_id] = frame
        return out

    def propagate(self, direction: str = "forward"):
        from napari_seem.engine.video import FrameResult

        steps = {"forward": [1], "backward": [-1], "both": [1, -1]}[direction]
        for step in steps:
            sources = dict(self.prompted_frames)
            first = min(sources.values()) if step > 0 else max(sources.values())
            last = self.num_frames - 1 if step > 0 else 0
            active: set[int] = set()
            for t in range(first + step, last + step, step):
                active |= {o for o, s in sources.items() if s == t - step}
                if not active:
                    continue
                gray = _stretch(np.asarray(self.frames[t]))
                previous = {o: self.results[t - step][o].mask for o in active}
                new, lost = {}, set()
                for o in sorted(active):
                    others = [m for k, m in previous.items() if k != o]
                    mask = self._step(gray, previous[o], others)
                    if mask is not None and not self._contrasted(gray, mask, o):
                        mask = None
                    if mask is None:
                        lost.add(o)
                    else:
                        new[o] = ObjectResult(mask, torch.zeros(1, 1), 1.0)
                active -= lost
                for o, result in new.items():
                    self.results.setdefault(t, {})[o] = result
                if lost:
                    self.lost.setdefault(t, set()).update(lost)
                yield FrameResult(t, new, lost)

    def _contrasted(self, gray: np.ndarray, mask: np.ndarray, object_id: int) -> bool:
        """Whether ``mask`` still stands out as much as ``min_contrast`` of the object's first contrast
        (in the same direction: a dark cell stays darker than its surroundings)."""
        first = self.contrast.get(object_id, 0.0)
        if self.min_contrast is None or first == 0:
            return True
        return self._contrast(gray, mask) / first >= self.min_contrast

    def _contrast(self, gray: np.ndarray, mask: np.ndarray) -> float:
        """Mean gray inside ``mask`` minus the mean in the ring of ``dilate * r`` pixels around it,
        (0 for an empty mask or ring)."""
        from scipy.ndimage import binary_dilation

        if not mask.any():
            return 0.0
        width = max(2, int(round(self.dilate * np.sqrt(mask.sum() / np.pi))))
        ring = binary_dilation(mask, iterations=width) & ~mask
        if not ring.any():
            return 0.0
        return float(gray[mask].mean() - gray[ring].mean())

    def _step(self, gray: np.ndarray, mask: np.ndarray, others: list[np.ndarray]) -> np.ndarray | None:
        from scipy.ndimage import binary_dilation, binary_erosion, distance_transform_edt
        from scipy.ndimage import label as connected
        from skimage.segmentation import random_walker

        area = int(mask.sum())
        if area == 0:
            return None
        radius = float(np.sqrt(area / np.pi))
        inner, outer = max(1.0, self.erode * radius), max(2.0, self.dilate * radius)
        reach = int(np.ceil(outer)) + 2
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        y0, y1 = max(rows[0] - reach, 0), min(rows[-1] + reach + 1, mask.shape[0])
        x0, x1 = max(cols[0] - reach, 0), min(cols[-1] + reach + 1, mask.shape[1])
        window = mask[y0:y1, x0:x1]
        # distances inside and outside the mask (the image border is not the object's boundary)
        inside = distance_transform_edt(np.pad(window, 1, mode="edge"))[1:-1, 1:-1]
        outside = distance_transform_edt(~window)
        seeds = np.zeros(window.shape, np.int32)
        seeds[outside > outer] = 2
        for other in others:
            part = other[y0:y1, x0:x1]
            if part.any():
                seeds[binary_erosion(part, iterations=max(1, int(inner))) & ~window] = 2
        seeds[inside > inner] = 1
        if not (seeds == 1).any():
            return None
        if not (seeds == 2).any():
            walked = binary_dilation(window)  # nothing to hold it: it may only grow a little
        else:
            walked = random_walker(gray[y0:y1, x0:x1].astype(np.float64), seeds, beta=self.beta, mode="cg_j",
                                   tol=1e-3) == 1
        parts, count = connected(walked)
        if count == 0:
            return None
        votes = np.bincount(parts[seeds == 1], minlength=count + 1)
        votes[0] = 0
        out = np.zeros(mask.shape, bool)
        out[y0:y1, x0:x1] = parts == int(votes.argmax())
        return out


def _stretch(plane: np.ndarray) -> np.ndarray:
    """A gray plane as float 0..1 between its 1st and 99.8th percentiles (channels averaged)."""
    plane = np.asarray(plane, dtype=np.float64)
    if plane.ndim == 3:
        plane = plane.mean(-1)
    low, high = np.percentile(plane, (1.0, 99.8))
    return np.clip((plane - low) / max(high - low, 1e-9), 0.0, 1.0)
