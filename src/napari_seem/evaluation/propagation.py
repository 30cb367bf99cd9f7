"""Propagation through a time-lapse (or z-stack) against tracked labels, DAVIS-style.

Every track present on the first frame is prompted there with its own mask (``MaskPrompt``), then
``VideoSession.propagate("forward")`` carries all of them. On each later frame, every track that
still exists in the reference is scored: region similarity **J** (IoU) and boundary **F**
(F-measure of the boundary pixels matched within ``ceil(0.008 * image diagonal)`` pixels, the
DAVIS tolerance); an object the session lost, or has no mask for, scores 0. Reported: J, F and
J&F per frame and their means over the propagated frames, the tracks lost (marked lost by the
session while the reference still has them) and seconds per frame (read, encode and decode).

With ``labels_tracked_pseudogt.tif`` of the T98G sequence the reference is the Usiigaci pipeline's
output, not manual annotation: the numbers are agreement with pseudo ground truth.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion

from napari_seem.engine.conversion import mask_iou
from napari_seem.prompts import MaskPrompt, ObjectPrompt

DAVIS_BOUNDARY = 0.008


def boundary(mask: np.ndarray) -> np.ndarray:
    """The mask's boundary pixels: inside the mask with a 4-neighbour outside it (or the border)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~binary_erosion(mask, border_value=0)


def boundary_f(prediction: np.ndarray, target: np.ndarray, tolerance: int | None = None) -> float:
    """DAVIS boundary F-measure of two bool masks; ``tolerance`` in pixels (default: 0.008 x the
    image diagonal, rounded up). Both empty: 1; one empty: 0."""
    if tolerance is None:
        tolerance = math.ceil(DAVIS_BOUNDARY * math.hypot(*target.shape))
    pred_b, target_b = boundary(prediction), boundary(target)
    if not pred_b.any() and not target_b.any():
        return 1.0
    if not pred_b.any() or not target_b.any():
        return 0.0
    yy, xx = np.mgrid[-tolerance : tolerance + 1, -tolerance : tolerance + 1]
    disk = yy**2 + xx**2 <= tolerance**2
    precision = (pred_b & binary_dilation(target_b, structure=disk)).sum() / pred_b.sum()
    recall = (target_b & binary_dilation(pred_b, structure=disk)).sum() / target_b.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


@dataclass
class FrameScore:
    """One frame: mean ``j``, ``f`` and ``jf`` over the ``tracks`` present in the reference, the
    tracks lost so far (``lost``) and the step's ``seconds``."""

    frame: int
    j: float
    f: float
    jf: float
    tracks: int
    lost: int
    seconds: float


@dataclass
class PropagationReport:
    objects: int
    frames: int
    j: float
    f: float
    jf: float
    lost_tracks: int
    seconds_per_frame: float
    first_frame: FrameScore
    per_frame: list[FrameScore] = field(default_factory=list)

    def summary(self) -> dict:
        out = asdict(self)
        out["per_frame"] = [asdict(s) for s in self.per_frame]
        return out


def score_frame(results: dict, reference: np.ndarray, objects: list[int], tolerance: int | None = None
                ) -> tuple[float, float, int]:
    """Mean J and F over the ``objects`` present in ``reference`` (track ids) on one frame, and how
    many there are; ``results``: object id -> result with a ``mask`` (missing = nothing found)."""
    js, fs = [], []
    for object_id in objects:
        target = reference == object_id
        if not target.any():
            continue  # the track has ended (left the field of view): nothing to score
        result = results.get(object_id)
        prediction = result.mask if result is not None else np.zeros_like(target)
        js.append(mask_iou(prediction, target))
        fs.append(boundary_f(prediction, target, tolerance))
    if not js:
        return float("nan"), float("nan"), 0
    return float(np.mean(js)), float(np.mean(fs)), len(js)


def evaluate_propagation(predictor, frames: np.ndarray, reference: np.ndarray, max_frames: int | None = None,
                         progress=None, **session_options) -> PropagationReport:
    """Prompt every track of ``reference[0]`` with its mask on frame 0, propagate forward through
    ``frames`` (``(T, H, W)``), score every frame against ``reference`` (``(T, H, W)`` track ids).
    ``session_options`` go to :class:`~napari_seem.engine.VideoSession`; ``progress`` is called with
    each :class:`FrameScore`."""
    from napari_seem.engine import VideoSession

    count = len(frames) if max_frames is None else min(max_frames, len(frames))
    frames, reference = frames[:count], np.asarray(reference[:count])
    objects = [int(i) for i in np.unique(reference[0]) if i != 0]
    if not objects:
        raise ValueError("the reference has no object on the first frame")
    session = VideoSession(predictor, frames, **session_options)
    start = time.perf_counter()
    session.add_objects(0, {o: ObjectPrompt(masks=[MaskPrompt(reference[0] == o)]) for o in objects})
    j, f, tracks = score_frame(session.results.get(0, {}), reference[0], objects)
    first = FrameScore(0, j, f, (j + f) / 2, tracks, 0, time.perf_counter() - start)
    scores, lost = [], set()
    start = time.perf_counter()
    for step in session.propagate("forward"):
        seconds = time.perf_counter() - start
        present = {o for o in objects if (reference[step.frame] == o).any()}
        lost |= step.lost & present
        j, f, tracks = score_frame(step.results, reference[step.frame], objects)
        scores.append(FrameScore(step.frame, j, f, (j + f) / 2, tracks, len(lost), seconds))
        if progress is not None:
            progress(scores[-1])
        start = time.perf_counter()
    valid = [s for s in scores if s.tracks]
    mean = lambda name: float(np.mean([getattr(s, name) for s in valid])) if valid else float("nan")  # noqa: E731
    return PropagationReport(len(objects), count, mean("j"), mean("f"), mean("jf"), len(lost),
                             float(np.mean([s.seconds for s in scores])) if scores else 0.0, first, scores)
