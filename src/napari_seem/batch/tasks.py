"""Batch tasks: one input file (or one chunk of a stack's planes) in, one label file out, a small
summary back. They run in Dask workers or, for ``--local``, in the calling process; the result is
the same either way.

* **segment**: the objects of a prompts file, all objects of a plane decoded together
  (``SeemPredictor.predict``); the label image holds each object's id (higher ids on top).
* **everything**: ``SeemPredictor.segment_everything`` on every plane; ids 1..n per plane.
* **propagate**: a ``VideoSession`` over one stack: the prompted objects are segmented on their
  frames and carried through the stack. Always one task per stack (see ``batch/__init__``).
* **precompute**: every plane of the file encoded into a ``FeatureCache`` (no label output), by
  ``napari_seem.batch.precompute.precompute``.

Failures: a ``ValueError`` is bad input (unreadable file, wrong shape, a prompt outside the image):
the task returns a *failed* summary at once, since running it again cannot help. Any other error
(a full disk, a lost connection, a killed worker) is raised, so Dask retries the task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

from napari_seem.prompts import PromptError, validate

from .inputs import BatchInputError, read_array, read_planes
from .models import ModelSpec, predictor_for
from .prompts_file import ObjectSpec
from .writing import assemble_parts, remove_leftovers, write_labels, write_part

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class SegmentOptions:
    """The input's objects, and class names to label the results with (optional)."""

    objects: tuple[ObjectSpec, ...]
    vocabulary: tuple[str, ...] = ()


@dataclass(frozen=True)
class EverythingOptions:
    vocabulary: tuple[str, ...]
    object_threshold: float = 0.4
    overlap_threshold: float = 0.8
    mask_threshold: float = 0.5
    min_area: int = 0
    strategy: str = "queries"  # or "points": SeemPredictor.segment_everything's strategies


@dataclass(frozen=True)
class PropagateOptions:
    """The stack's objects (each on its ``frame``), the propagation ``axis`` of the file's array, the
    ``direction``, the lost-object criteria (``VideoSession``'s ``lost_iou``/``lost_score``;
    None: the session's defaults) and the ``stack_kind`` (``"time"``, or ``"z"``: an object ends
    where its nucleus fades, docs/propagation.md)."""

    objects: tuple[ObjectSpec, ...]
    axis: int = 0
    direction: str = "both"
    lost_iou: float | None = None
    lost_score: float | None = None
    stack_kind: str = "time"


@dataclass(frozen=True)
class PrecomputeOptions:
    """Fill the feature cache in ``cache_dir`` (at most ``max_bytes``) with every plane of the file,
    as ``napari_seem.batch.precompute.precompute`` does (stack ``axis``, ``channel_axis``, ``channels``)."""

    cache_dir: str
    max_bytes: int | None = None
    axis: int | None = None
    channel_axis: int | None = None
    channels: tuple[int, ...] | None = None


Options = Union[SegmentOptions, EverythingOptions, PropagateOptions, PrecomputeOptions]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``source`` -> ``target`` (``fmt`` "tif" or "zarr"). ``planes``: the
    ``(start, stop)`` planes of a stack split over several tasks (the task then writes a part),
    ``None`` for the whole file."""

    source: str
    target: str
    fmt: str
    model: ModelSpec
    options: Options
    planes: tuple[int, int] | None = None

    @property
    def kind(self) -> str:
        return {SegmentOptions: "segment", EverythingOptions: "everything", PropagateOptions: "propagate",
                PrecomputeOptions: "precompute"}[type(self.options)]

    @property
    def writes_labels(self) -> bool:
        """Whether ``target`` is a label file (precompute writes cache entries instead)."""
        return not isinstance(self.options, PrecomputeOptions)


def run_task(task: Task) -> dict[str, Any]:
    """Run ``task`` and write its output; returns its summary (``status`` "ok" or "failed")."""
    if isinstance(task.options, PrecomputeOptions):
        return _run_precompute(task)
    start = time.perf_counter()
    try:
        with predictor_for(task.model) as (predictor, weights):
            labels, objects, single = _COMPUTE[type(task.options)](predictor, task)
        if task.planes is None:
            write_labels(task.target, labels[0] if single else labels, task.fmt, _attrs(task, weights))
        else:
            write_part(task.target, task.planes[0], labels)
    except ValueError as err:  # bad input: a retry would fail the same way
        return failed_summary(task, err)
    summary = {"input": task.source, "output": task.target if task.planes is None else None, "status": "ok",
               "shape": list(labels.shape[1:] if single else labels.shape), "objects": objects,
               "weights": weights, "worker": _worker_name(), "seconds": round(time.perf_counter() - start, 3)}
    if task.planes is not None:
        summary["planes"] = list(task.planes)
    return summary


def assemble(task: Task, *chunks: dict[str, Any]) -> dict[str, Any]:
    """Write ``task.target`` from the parts of its chunk tasks (their summaries ``chunks``, in plane
    order); if any chunk failed, delete the parts and report the file failed."""
    failures = [c for c in chunks if c["status"] != "ok"]
    if failures:
        remove_leftovers(task.target)
        errors = "; ".join(f"planes {c['planes'][0]}..{c['planes'][1] - 1}: {c['error']}" for c in failures)
        return {**failed_summary(task, errors), "planes_failed": [c["planes"] for c in failures]}
    weights = chunks[0]["weights"]
    assemble_parts(task.target, [c["planes"][0] for c in chunks], task.fmt, _attrs(task, weights))
    shape = [sum(c["shape"][0] for c in chunks), *chunks[0]["shape"][1:]]
    return {"input": task.source, "output": task.target, "status": "ok", "shape": shape,
            "objects": [o for c in chunks for o in c["objects"]], "weights": weights, "worker": _worker_name(),
            "seconds": round(sum(c["seconds"] for c in chunks), 3), "tasks": len(chunks)}


def _run_precompute(task: Task) -> dict[str, Any]:
    """Encode the file's planes into the feature cache (entries are written atomically by the cache)."""
    from .precompute import precompute
    from napari_seem.engine.feature_cache import FeatureCache

    options: PrecomputeOptions = task.options
    start = time.perf_counter()
    try:
        with predictor_for(task.model) as (predictor, weights):
            cache = FeatureCache(options.cache_dir, max_bytes=options.max_bytes)
            counts = precompute([task.source], cache, predictor.model, task.model.target_size, options.axis,
                                options.channel_axis, list(options.channels) if options.channels else None,
                                progress=False)
    except ValueError as err:  # bad input: a retry would fail the same way
        return failed_summary(task, err)
    return {"input": task.source, "output": None, "status": "ok",
            **{k: counts[k] for k in ("planes", "hits", "misses", "rejected")},
            "weights": weights, "worker": _worker_name(), "seconds": round(time.perf_counter() - start, 3)}


def failed_summary(task: Task, error: BaseException | str) -> dict[str, Any]:
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    summary = {"input": task.source, "output": None, "status": "failed", "error": message}
    if task.planes is not None:
        summary["planes"] = list(task.planes)
    return summary


def _attrs(task: Task, weights: str) -> dict[str, Any]:
    """What a zarr output records about how it was made."""
    return {"napari_seem": {"command": task.kind, "source": task.source, "weights": weights}}


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):  # not inside a Dask worker
        return "local"


# ---------------------------------------------------------------------------------------- inputs
def _planes(task: Task) -> tuple[np.ndarray, int, bool]:
    """The task's planes ``(n, H, W[, C])``, the file's plane count, and whether the file is a single
    plane (its output is then 2D)."""
    start, stop = task.planes if task.planes is not None else (None, None)
    return read_planes(task.source, start, stop)


def _check_frames(objects: tuple[ObjectSpec, ...], count: int, source: str) -> None:
    beyond = [o for o in objects if o.frame >= count]
    if beyond:
        o = beyond[0]
        raise BatchInputError(f"{source}: object id {o.object_id} is on frame {o.frame}, "
                              f"but the file has {count} plane(s) (frames 0..{count - 1})")


# ---------------------------------------------------------------------------------------- compute
def _segment(predictor, task: Task) -> tuple[np.ndarray, list[dict], bool]:
    """Labels ``[n, H, W]`` of the prompted objects on each of the task's planes."""
    options: SegmentOptions = task.options
    planes, total, single = _planes(task)
    offset = task.planes[0] if task.planes else 0
    _check_frames(options.objects, total, task.source)
    # Every task sets the predictor's vocabulary: a worker's predictor is shared by its tasks.
    predictor.set_vocabulary(list(options.vocabulary) or None)
    labels = np.zeros(planes.shape[:3], np.uint32)
    described = []
    for index, plane in enumerate(planes):
        frame = offset + index
        mine = sorted((o for o in options.objects if o.frame == frame), key=lambda o: o.object_id)
        if not mine:
            continue
        for spec in mine:  # checked here to name the object by its id (the predictor names its position)
            try:
                validate(spec.prompt, plane.shape[:2])
            except PromptError as err:
                raise PromptError(f"frame {frame}, object id {spec.object_id}: {err}") from None
        predictor.set_image(plane)
        results = predictor.predict([o.prompt for o in mine])
        for spec, result in zip(mine, results):  # ascending ids: the higher id ends on top
            labels[index][result.mask] = spec.object_id
            described.append(_describe(spec, result))
    return labels, described, single


def _describe(spec: ObjectSpec, result) -> dict[str, Any]:
    entry = {"id": spec.object_id, "frame": spec.frame, "pixels": int(result.mask.sum()),
             "score": round(float(result.score), 4)}
    if result.class_name is not None:
        entry["class_name"] = result.class_name
        entry["class_score"] = round(float(result.class_score), 4)
    return entry


def _everything(predictor, task: Task) -> tuple[np.ndarray, list[dict], bool]:
    """Labels ``[n, H, W]``: each plane's instances, ids 1..k per plane."""
    options: EverythingOptions = task.options
    planes, _, single = _planes(task)
    offset = task.planes[0] if task.planes else 0
    labels = np.zeros(planes.shape[:3], np.uint32)
    described = []
    for index, plane in enumerate(planes):
        result = predictor.segment_everything(
            list(options.vocabulary), options.object_threshold, options.overlap_threshold,
            options.mask_threshold, options.min_area, image=plane, strategy=options.strategy)
        labels[index] = result.labels
        described.extend({"id": i + 1, "frame": offset + index, "class_name": name, "score": round(float(score), 4)}
                         for i, (name, score) in enumerate(zip(result.class_names, result.scores)))
    return labels, described, single


def _propagate(predictor, task: Task) -> tuple[np.ndarray, list[dict], bool]:
    """Labels of the whole stack in the file's own axis order (channels dropped), as ``[1, ...]``."""
    from napari_seem.engine import VideoSession

    options: PropagateOptions = task.options
    array = read_array(task.source)
    frames = _frames_along(array, options.axis, task.source)
    _check_frames(options.objects, frames.shape[0], task.source)
    predictor.set_vocabulary(None)
    lost = {k: v for k, v in (("lost_iou", options.lost_iou), ("lost_score", options.lost_score)) if v is not None}
    session = VideoSession(predictor, frames, stack_kind=options.stack_kind, **lost)
    for frame in sorted({o.frame for o in options.objects}):
        session.add_objects(frame, {o.object_id: o.prompt for o in options.objects if o.frame == frame})
    for _ in session.propagate(options.direction):
        pass
    stack = np.stack([session.labels(t) for t in range(frames.shape[0])])
    described = [{"id": o, "prompted_frames": sorted(session.prompted_frames.get(o, [])),
                  "frames_with_mask": sum(o in per_frame for per_frame in session.results.values()),
                  "lost_on": sorted(t for t, ids in session.lost.items() if o in ids)} for o in session.objects]
    return np.moveaxis(stack, 0, options.axis)[None], described, True


def _frames_along(array: np.ndarray, axis: int, source: str) -> np.ndarray:
    """``(T, H, W[, C])`` frames of a ``(.., .., ..)`` gray or ``(.., .., .., 3|4)`` RGB stack, with
    the propagation ``axis`` first."""
    rgb = array.ndim == 4 and array.shape[-1] in (3, 4)
    if array.ndim != 3 and not rgb:
        raise BatchInputError(f"{source}: propagation needs a stack (T, H, W) or (T, H, W, 3), got shape {array.shape}")
    if not 0 <= axis < 3:
        raise BatchInputError(f"{source}: --axis must be 0, 1 or 2 (a non-channel axis), got {axis}")
    return np.moveaxis(array, axis, 0)


_COMPUTE = {SegmentOptions: _segment, EverythingOptions: _everything, PropagateOptions: _propagate}

