"""Propagation through a time-lapse or a z-stack against tracked labels, DAVIS-style.

Two protocols, by where the objects are prompted (``anchors``):

* ``"first"`` (time-lapses): every track present on the first frame is prompted there and the
  session propagates ``"forward"``.
* ``"middle"`` (z-stacks): every object is prompted on the middle slice of its own z extent and
  the session propagates ``"both"`` ways from there (each object from its own slice).

The prompt is the object's reference mask (``prompt="mask"``, the semi-supervised DAVIS protocol)
or one click at its interior point farthest from the boundary (``prompt="click"``, the first click
of the interactive protocol).

Scores, once the propagation is done, from the session's final results:

* **J** (IoU) and boundary **F** (F-measure of the boundary pixels matched within
  ``ceil(0.008 * image diagonal)`` pixels, the DAVIS tolerance) of every object on every frame
  where the reference has it, except the frame it was prompted on; an object the session lost or
  has no mask for scores 0. A frame's J and F are the means over its objects; the report's are the
  means over frames. J&F is their mean.
* **J_volume**: per object, the IoU of the whole tube (summed intersections over summed unions
  over *all* frames, those without the object in the reference and the prompted one included), the
  mean over objects. A never-ending object (labels on every slice of a z-stack although the
  nucleus spans 15) scores low here however good its masks are where the object is.
* **extent error** (``anchors="middle"``): per object, the mean over its two ends of how many
  slices the predicted first/last slice is off the reference's (0: ends on the right slices).
* **lost tracks**: objects the session marked lost on a frame where the reference still has them;
  **seconds per frame**: the propagation's time (read, encode, decode) over the frames computed.

With ``labels_tracked_pseudogt.tif`` of the T98G sequence the reference is the Usiigaci pipeline's
output, not manual annotation: the numbers are agreement with pseudo ground truth.

The session is a :class:`~napari_seem.engine.VideoSession` on the predictor, or whatever
``session_factory(frames)`` returns with the same ``add_objects`` / ``propagate`` / ``results`` /
``lost`` interface (the classical floor, :class:`~napari_seem.evaluation.baseline.RandomWalkerSession`).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion

from napari_seem.engine.conversion import mask_iou
from napari_seem.prompts import MaskPrompt, ObjectPrompt, Point

from .clicks import first_click

DAVIS_BOUNDARY = 0.008
ANCHORS = ("first", "middle")
PROMPTS = ("mask", "click")


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
    """One frame: mean ``j``, ``f`` and ``jf`` over the ``tracks`` scored there (present in the
    reference, not prompted there) and how many of them the session lost there (``lost``)."""

    frame: int
    j: float
    f: float
    jf: float
    tracks: int
    lost: int


@dataclass
class ObjectScore:
    """One object: its prompted frame, the reference's and the prediction's first and last frames
    (``None`` when never predicted), the tube IoU ``j_volume`` and whether it was lost while present."""

    object_id: int
    anchor: int
    extent: tuple[int, int]
    predicted: tuple[int, int] | None
    j_volume: float
    lost: bool


@dataclass
class PropagationReport:
    """One stack's (or, from :func:`combine`, one set's) figures; see the module docstring."""

    name: str
    objects: int
    frames: int
    j: float
    f: float
    jf: float
    j_volume: float
    extent_error: float
    lost_tracks: int
    seconds_per_frame: float
    prompt: str = "mask"
    anchors: str = "first"
    stacks: int = 1
    per_frame: list[FrameScore] = field(default_factory=list)
    per_object: list[ObjectScore] = field(default_factory=list)

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("per_frame")
        out.pop("per_object")
        return out

    def full(self) -> dict:
        return asdict(self)


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


def object_anchors(reference: np.ndarray, anchors: str) -> dict[int, int]:
    """Each object's prompted frame: ``"first"``: the tracks of frame 0, all on frame 0; ``"middle"``:
    every object of the stack on the middle frame of its extent (the nearest frame that has it,
    should the object skip that one)."""
    if anchors not in ANCHORS:
        raise ValueError(f"anchors must be one of {ANCHORS}, got {anchors!r}")
    if anchors == "first":
        return {int(o): 0 for o in np.unique(reference[0]) if o != 0}
    out = {}
    for o in np.unique(reference):
        if o == 0:
            continue
        frames = np.flatnonzero((reference == o).any(axis=(1, 2)))
        middle = (int(frames[0]) + int(frames[-1])) // 2
        out[int(o)] = int(frames[np.abs(frames - middle).argmin()])
    return out


def object_prompt(target: np.ndarray, prompt: str) -> ObjectPrompt:
    """The object's prompt from its reference mask: the mask itself, or one click at its centre."""
    if prompt == "mask":
        return ObjectPrompt(masks=[MaskPrompt(target)])
    if prompt == "click":
        click = first_click(target)
        return ObjectPrompt(points=[Point(click.y, click.x)])
    raise ValueError(f"prompt must be one of {PROMPTS}, got {prompt!r}")


def evaluate_propagation(predictor, frames: np.ndarray, reference: np.ndarray, max_frames: int | None = None,
                         progress: Callable | None = None, *, prompt: str = "mask", anchors: str = "first",
                         name: str = "", session_factory: Callable | None = None,
                         **session_options) -> PropagationReport:
    """Prompt the objects of ``reference`` (``(T, H, W)`` track ids) on their anchor frames
    (``anchors``, ``prompt``: see the module docstring), propagate through ``frames`` (``(T, H, W)``)
    and score the result. The session is ``session_factory(frames)`` or a
    :class:`~napari_seem.engine.VideoSession` on ``predictor`` with ``session_options``;
    ``progress`` is called with each ``FrameResult`` as it is computed."""
    count = len(frames) if max_frames is None else min(max_frames, len(frames))
    frames, reference = frames[:count], np.asarray(reference[:count])
    anchor_of = object_anchors(reference, anchors)
    if not anchor_of:
        raise ValueError("the reference has no object to prompt")
    if session_factory is None:
        from napari_seem.engine import VideoSession

        session = VideoSession(predictor, frames, **session_options)
    else:
        session = session_factory(frames)
    by_frame: dict[int, dict[int, ObjectPrompt]] = {}
    for o, t in sorted(anchor_of.items()):
        by_frame.setdefault(t, {})[o] = object_prompt(reference[t] == o, prompt)
    for t, prompts in sorted(by_frame.items()):
        session.add_objects(t, prompts)
    direction = "forward" if anchors == "first" else "both"
    start, computed = time.perf_counter(), 0
    for step in session.propagate(direction):
        computed += 1
        if progress is not None:
            progress(step)
    seconds = (time.perf_counter() - start) / computed if computed else 0.0
    return score_session(session.results, session.lost, reference, anchor_of, seconds, name, prompt, anchors)


def score_session(results: dict, lost: dict, reference: np.ndarray, anchor_of: dict[int, int], seconds: float,
                  name: str = "", prompt: str = "mask", anchors: str = "first") -> PropagationReport:
    """The report of a finished session (``results[frame][object]``, ``lost[frame]``)."""
    objects = sorted(anchor_of)
    tolerance = math.ceil(DAVIS_BOUNDARY * math.hypot(*reference.shape[1:]))
    per_frame = []
    inter = {o: 0 for o in objects}
    union = {o: 0 for o in objects}
    predicted: dict[int, list[int]] = {o: [] for o in objects}
    lost_objects = set()
    for t in range(reference.shape[0]):
        on_frame = results.get(t, {})
        for o in objects:
            target = reference[t] == o
            result = on_frame.get(o)
            if result is not None and result.mask.any():
                predicted[o].append(t)
                inter[o] += int(np.count_nonzero(result.mask & target))
                union[o] += int(np.count_nonzero(result.mask | target))
            else:
                union[o] += int(np.count_nonzero(target))
        scored = [o for o in objects if anchor_of[o] != t]
        j, f, tracks = score_frame(on_frame, reference[t], scored, tolerance)
        dropped = {o for o in lost.get(t, set()) if o in anchor_of and (reference[t] == o).any()}
        lost_objects |= dropped
        if tracks:
            per_frame.append(FrameScore(t, j, f, (j + f) / 2, tracks, len(dropped)))
    per_object = []
    for o in objects:
        present = np.flatnonzero((reference == o).any(axis=(1, 2)))
        extent = (int(present[0]), int(present[-1]))
        ends = (min(predicted[o]), max(predicted[o])) if predicted[o] else None
        per_object.append(ObjectScore(o, anchor_of[o], extent, ends, inter[o] / union[o] if union[o] else 0.0,
                                      o in lost_objects))
    return _report(name, reference.shape[0], per_frame, per_object, seconds, prompt, anchors)


def _report(name, frames, per_frame, per_object, seconds, prompt, anchors, stacks=1) -> PropagationReport:
    mean = lambda values: float(np.mean(values)) if len(values) else float("nan")  # noqa: E731
    errors = [(abs(p[0] - s.extent[0]) + abs(p[1] - s.extent[1])) / 2 if (p := s.predicted) else
              (s.extent[1] - s.extent[0] + 1) / 2 for s in per_object]
    return PropagationReport(
        name, len(per_object), frames, mean([s.j for s in per_frame]), mean([s.f for s in per_frame]),
        mean([s.jf for s in per_frame]), mean([s.j_volume for s in per_object]), mean(errors),
        sum(s.lost for s in per_object), seconds, prompt, anchors, stacks, per_frame, per_object)


def combine(reports: list[PropagationReport], name: str = "") -> PropagationReport:
    """One set's figures from its stacks' reports: frames and objects pooled (J, F, J&F: means over
    all scored frames of all stacks; J_volume, extent error: means over all objects)."""
    if not reports:
        raise ValueError("no reports to combine")
    if len(reports) == 1 and not name:
        return reports[0]
    seconds = float(np.mean([r.seconds_per_frame for r in reports]))
    return _report(name or reports[0].name, sum(r.frames for r in reports),
                   [s for r in reports for s in r.per_frame], [s for r in reports for s in r.per_object],
                   seconds, reports[0].prompt, reports[0].anchors, len(reports))


def format_reports(rows: list[tuple[str, PropagationReport]]) -> str:
    """A table, one row per ``(label, report)``."""
    lines = [f"{'':34} {'J':>6} {'F':>6} {'J&F':>6} {'J_vol':>6} {'ends':>5} {'lost':>7} {'s/frame':>8}"]
    for label, r in rows:
        lines.append(f"{label[:34]:34} {r.j:6.3f} {r.f:6.3f} {r.jf:6.3f} {r.j_volume:6.3f} "
                     f"{r.extent_error:5.2f} {r.lost_tracks:>3}/{r.objects:<3} {r.seconds_per_frame:8.2f}")
    return "\n".join(lines)


def load_stacks(root, images: str = "images.tif", labels: str = "labels_tracked_pseudogt.tif"
                ) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], str]:
    """The stacks of a dataset folder and the protocol they call for: ``root/images`` (a file) with
    its tracked ``root/labels``, a time-lapse (``"first"``); or folders ``root/images/*.tif`` and
    ``root/labels/*.tif`` of the same names, z-stacks (``"middle"``)."""
    from pathlib import Path

    import tifffile

    root = Path(root)
    if (root / "images").is_dir() and (root / "labels").is_dir():
        stacks = []
        for path in sorted((root / "images").glob("*.tif")):
            target = root / "labels" / path.name
            if target.exists():
                stacks.append((path.stem, tifffile.imread(path), tifffile.imread(target)))
        kind = "middle"
    else:
        stacks, kind = [(root.name, tifffile.imread(root / images), tifffile.imread(root / labels))], "first"
    if not stacks:
        raise ValueError(f"no stacks with labels in {root}")
    for name, frames, reference in stacks:
        if frames.shape[:3] != reference.shape[:3]:
            raise ValueError(f"{name}: frames {frames.shape} and labels {reference.shape} differ in (T, H, W)")
    return stacks, kind
