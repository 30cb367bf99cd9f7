"""The dock widget's logic without Qt: which plane, which axis, which prompts, what to write.

The widget (``plugin/widget.py``) is a thin Qt layer over :class:`SeemController`. Each action is
split the same way, so that the slow part can run in a worker thread while the layers are only read
and written on the GUI thread:

1. ``plan_*`` (GUI thread): read the layers and settings into a plain job object;
2. ``run_*`` (worker thread): the model work, returning or yielding results;
3. ``write_*`` (GUI thread): turn results into exact label changes (``label_writer.plan_write``)
   applied with ``Labels.data_setitem``, so the labels layer's undo (Ctrl-Z) reverts them.

Axes and planes (what the stack axis is, which plane is on screen) are in :mod:`.axes`.

Layers are duck-typed (``data``, ``ndim``, ``features``, ``data_setitem``, transforms), so tests can
use bare napari layers without a viewer. torch is imported only inside the ``run_*`` methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from napari_seem.prompts import ObjectPrompt, PromptError

from . import models
from .axes import (  # noqa: F401 - re-exported: the widget and tests import them from here
    DIRECTIONS,
    ROLE_LABELS,
    ROLES,
    AxisStack,
    Geometry,
    PluginError,
    current_plane,
    describe_plane,
    layer_geometry,
    parse_channels,
    propagation_axis,
    propagation_range,
)
from .label_writer import WRITE_MODES, assign_ids, plan_write
from .layer_prompts import labels_to_prompts, points_to_prompts, shapes_to_prompts
from . import recording
from .recording import weights_digest
from .threads import default_threads, use_threads

NEW_OBJECT = 0  # the object id of prompts for an object that has no id yet
FEATURE_COLUMNS = ("index", "class_name", "class_score", "score", "source", "round")
# The engine names an object "background" when no vocabulary class beats the background class.
BACKGROUND_NAMES = frozenset({"background"})


def parse_vocabulary(text: str | None) -> list[str]:
    """Class names from a comma-separated box (blanks and repeats dropped, order kept)."""
    names = [n.strip() for n in (text or "").split(",")]
    return list(dict.fromkeys(n for n in names if n))


def class_name_of(name: str | None, vocabulary: Sequence[str] | None = None) -> str:
    """The class an object is named by: ``name`` when a vocabulary class won, ``""`` when none did
    (the background class won, or ``name`` is not in ``vocabulary``). An object is never called
    "background", even if the vocabulary lists it."""
    name = (name or "").strip()
    if not name or name.lower() in BACKGROUND_NAMES or (vocabulary is not None and name not in vocabulary):
        return ""
    return name


def check_finite(plane: Any, where: str = "this plane") -> None:
    """:class:`PluginError` when an in-memory float ``plane`` has no finite value (all NaN or
    infinite): there is nothing to segment, and the model would only answer with empty masks.
    Lazy planes (dask) are not read for this."""
    if isinstance(plane, np.ndarray) and np.issubdtype(plane.dtype, np.inexact) and not np.isfinite(plane).any():
        raise PluginError(f"the image has no finite values on {where} (all NaN or infinite): nothing to segment; "
                          "check the image's data or choose another plane")


# ---------------------------------------------------------------------------------------- prompts
def collect_prompts(image: Any, points: Any, shapes: Any, geometry: Geometry,
                    plane: tuple[int, ...]) -> dict[int, ObjectPrompt]:
    """Prompts of the points and shapes layers drawn on ``plane``, by object id (0 = a new object)."""
    prompts: dict[int, ObjectPrompt] = {}
    found = []
    if points is not None:
        found.append(points_to_prompts(points, image, plane))
    if shapes is not None and len(shapes.data):
        found.append(shapes_to_prompts(shapes, image, geometry.plane_shape, plane))
    for by_object in found:
        for object_id, prompt in by_object.items():
            merged = prompts.setdefault(object_id, ObjectPrompt())
            merged.points += prompt.points
            merged.boxes += prompt.boxes
            merged.scribbles += prompt.scribbles
            merged.masks += prompt.masks
    return prompts


def prompt_key(prompt: ObjectPrompt) -> tuple:
    """A hashable summary of a prompt, to tell whether an object's prompts changed since last time."""
    masks = tuple((m.positive, hash(np.packbits(np.asarray(m.mask, bool)).tobytes())) for m in prompt.masks)
    return (tuple(prompt.points), tuple(prompt.boxes), tuple(prompt.scribbles), masks,
            (prompt.text or "").strip())


def objects_to_segment(prompts: Mapping[int, ObjectPrompt], last_keys: Mapping[int, tuple],
                       current: int) -> list[int]:
    """Objects whose prompts changed since their last round (so an unchanged object, maybe edited by
    hand since, is not recomputed); if none changed, the current object again (a refinement round)."""
    changed = [o for o, p in prompts.items() if last_keys.get(o) != prompt_key(p)]
    if changed:
        return sorted(changed)
    if current in prompts:
        return [current]
    if prompts:
        return sorted(prompts)
    raise PluginError("no prompts on this plane: click points in the 'SEEM points' layer, draw a shape in "
                      "'SEEM shapes', or type a text prompt")


def _rows_on_plane(layer: Any, image: Any, plane: tuple[int, ...], items: Sequence[np.ndarray]) -> np.ndarray:
    """Which of a layer's items (points, or shapes' vertex arrays) lie on ``plane``."""
    from .layer_prompts import to_image_coords

    if layer.ndim < image.ndim or not plane:
        return np.ones(len(items), dtype=bool)
    keep = []
    for vertices in items:
        coords = to_image_coords(layer, image, np.atleast_2d(vertices))
        keep.append(bool((np.round(coords[:, : len(plane)]).astype(int) == np.asarray(plane)).all()))
    return np.asarray(keep, dtype=bool)


def relabel_new_object(layer: Any, image: Any, plane: tuple[int, ...], new_id: int) -> None:
    """Give the prompts of the new object (object 0) on ``plane`` their id, once the id exists."""
    if layer is None or len(layer.data) == 0 or "object" not in layer.features.columns:
        return
    items = list(layer.data) if isinstance(layer.data, list) else [row for row in np.asarray(layer.data)]
    features = layer.features.copy()
    rows = (features["object"].to_numpy() == NEW_OBJECT) & _rows_on_plane(layer, image, plane, items)
    if rows.any():
        features.loc[rows, "object"] = new_id
        layer.features = features


# ---------------------------------------------------------------------------------------- jobs
@dataclass
class PlaneJob:
    """One round of prompted segmentation on one plane (object id 0 = a new object)."""

    data: Any
    index: tuple
    plane: tuple[int, ...]
    labels_plane: tuple[int, ...]
    channel_axis: int | None
    channels: tuple[int, ...] | None
    prompts: dict[int, ObjectPrompt]
    previous: dict[int, Any]
    vocabulary: list[str] | None
    requested_ids: dict[int, int | None] = field(default_factory=dict)
    geometry: Geometry | None = None  # the image's, for the round's provenance


@dataclass
class EverythingJob:
    """Segment-everything on one or more planes."""

    data: Any
    geometry: Geometry
    planes: list[tuple[int, ...]]
    channels: tuple[int, ...] | None
    vocabulary: list[str]
    threshold: float
    strategy: str = "points"  # engine strategy: "points" (grid of clicks) or "queries" (object queries)


# Segment-everything strategies as the widget names them -> the engine's names.
EVERYTHING_STRATEGIES = {"point grid": "points", "object queries": "queries"}


@dataclass
class Progress:
    """How far a long step is (yielded by ``run_*`` between its parts; shown, not written)."""

    text: str
    done: int
    total: int


@dataclass
class PlaneEverything:
    """What segment-everything found on one plane (yielded per plane)."""

    plane: tuple[int, ...]
    labels_plane: tuple[int, ...]
    result: Any  # engine.EverythingResult
    job: Any = None  # the EverythingJob it came from (for the provenance)


@dataclass
class PropagationJob:
    """Carry the objects of one frame's labels along ``stack`` (one data axis)."""

    stack: AxisStack
    channels: tuple[int, ...] | None
    source: int
    prompts: dict[int, ObjectPrompt]
    direction: str
    stop: int | tuple[int, int]
    labels_axis: int
    labels_plane: tuple[int, ...]
    steps: int
    kind: str = "time"  # what the stack axis is, "time" or "z": the session's rule for objects that end
    divisions: str = "lineage"  # "split": each daughter of a dividing cell gets a new id (time only)
    next_id: int = 1  # new ids (daughters) start here: above every label of the layer

    def labels_plane_for(self, frame: int) -> tuple[int, ...]:
        """The labels layer's leading indices of ``frame``."""
        plane = list(self.labels_plane)
        plane[self.labels_axis] = int(frame)
        return tuple(plane)


# loses little; beyond that small nuclei fall below the 1/4-resolution mask features).
TILING_FACTOR = 2


# ---------------------------------------------------------------------------------------- controller
class SeemController:
    """Model, memory and jobs of one dock widget (see the module docstring for the three phases)."""

    tiling_factor = TILING_FACTOR

    def __init__(self) -> None:
        self.model_choice: tuple[str, str | None, str] = (models.EMBEDDED_DEFAULT, None, "auto")
        self.loaded: models.LoadedModel | None = None
        self.predictor = None
        self.tiled = None  # a TiledPredictor on the same model, for planes too large to shrink
        self._loaded_choice: tuple | None = None
        self._custom: models.LoadedModel | None = None
        # Overrides of VideoSession's lost-object criteria for propagation (empty: its defaults;
        # lost_iou=0 and lost_score=0: never lost).
        self.lost_options: dict[str, float] = {}
        self.threads: int | None = default_threads()  # CPU threads for the model (None: torch's own)
        self.memory: dict[tuple[tuple[int, ...], int], Any] = {}  # (labels plane, id) -> last ObjectResult
        self.prompt_keys: dict[tuple[tuple[int, ...], int], tuple] = {}

    # ------------------------------------------------------------------ model
    def set_model(self, name: str, checkpoint: str | None = None, device: str = "auto") -> None:
        """Choose the model; it is (re)loaded by the next job that needs it."""
        self.model_choice = (name, (checkpoint or "").strip() or None, device)
        if self.model_choice != self._loaded_choice:
            self.forget()

    def use_model(self, model: Any, weights: str = "a model given from Python", target_size: int = 512) -> None:
        """Use an already built model (the scripting API's ``model=``) instead of a model source."""
        self._custom = models.LoadedModel(model.eval(), weights, target_size)
        self.model_choice = ("custom", None, "auto")
        self.forget()

    @property
    def model_ready(self) -> bool:
        """Whether the chosen model is loaded (otherwise the next job loads it first)."""
        return self.predictor is not None and self._loaded_choice == self.model_choice

    @property
    def weights(self) -> str | None:
        """The loaded model's weight statement (``None`` before loading)."""
        return None if self.loaded is None else self.loaded.weights

    def ensure_model(self):
        """The predictor of the chosen model, loading it first if needed (worker thread). Every job
        passes here before the model runs, so this is where the threads setting is applied."""
        use_threads(self.threads)
        if self.model_ready:
            return self.predictor
        from napari_seem.engine import SeemPredictor
        from napari_seem.engine.feature_cache import default_feature_cache

        choice = self.model_choice  # the GUI may change the choice while this loads
        self.predictor = None
        if choice[0] == "custom" and self._custom is not None:
            loaded = self._custom
        else:
            loaded = models.load_model(*choice)
        # Encodings go through the on-disk feature cache (off with NAPARI_SEEM_FEATURE_CACHE=0).
        predictor = SeemPredictor(loaded.model, target_size=loaded.target_size, cache=default_feature_cache())
        weights_digest(loaded.model)  # hashed here, off the GUI thread, for the labels' provenance
        self.predictor, self.loaded, self._loaded_choice = predictor, loaded, choice
        self.tiled = None
        return predictor

    def predictor_for(self, plane: Any, channel_axis: int | None):
        """The predictor for ``plane`` (worker thread): the whole-plane one, or for planes whose long side
        exceeds ``TILING_FACTOR`` x the model input, the tiled one (a click then encodes only the
        tiles it touches, at native resolution, instead of shrinking a slide to 512 pixels)."""
        from napari_seem.engine.tiling import TiledPredictor, plane_shape_of

        predictor = self.ensure_model()
        if max(plane_shape_of(plane.shape, channel_axis)) <= self.tiling_factor * self.loaded.target_size:
            return predictor
        if self.tiled is None:
            self.tiled = TiledPredictor(predictor.model, tile=self.loaded.target_size, cache=predictor.cache)
        return self.tiled

    def forget(self) -> None:
        """Drop the memory of previous rounds (a new image, model or cleared prompts)."""
        self.memory.clear()
        self.prompt_keys.clear()

    # ------------------------------------------------------------------ segment one plane
    def plan_plane(self, image: Any, geometry: Geometry, plane: tuple[int, ...], points: Any, shapes: Any,
                   text: str | None, current_object: int, vocabulary: Sequence[str] | None,
                   channels: tuple[int, ...] | None) -> PlaneJob:
        """A round on ``plane``: the objects whose prompts changed (see :func:`objects_to_segment`)."""
        prompts = collect_prompts(image, points, shapes, geometry, plane)
        text = (text or "").strip() or None
        if text:  # the text box belongs to the object being edited
            prompts.setdefault(current_object, ObjectPrompt()).text = text
        labels_plane = geometry.labels_plane(plane)
        last = {o: k for (p, o), k in self.prompt_keys.items() if p == labels_plane}
        chosen = objects_to_segment(prompts, last, current_object)
        for object_id in chosen:
            _check_prompt(prompts[object_id], geometry.plane_shape, object_id)
        return PlaneJob(
            data=image.data, index=geometry.image_index(plane), plane=plane, labels_plane=labels_plane,
            channel_axis=geometry.plane_channel_axis, channels=channels,
            prompts={o: prompts[o] for o in chosen},
            previous={o: self.memory.get((labels_plane, o)) for o in chosen},
            vocabulary=list(vocabulary) if vocabulary else None,
            requested_ids={o: None if o == NEW_OBJECT else o for o in chosen}, geometry=geometry,
        )

    def run_plane(self, job: PlaneJob) -> dict[int, Any]:
        """Encode the plane (cached when unchanged) and answer the prompts (worker thread)."""
        plane = job.data[job.index]  # a dask/zarr plane stays lazy for the tiled predictor
        check_finite(plane)
        predictor = self.predictor_for(plane, job.channel_axis)
        predictor.set_image(plane if predictor is self.tiled else np.asarray(plane), job.channel_axis, job.channels)
        predictor.set_vocabulary(job.vocabulary)
        ids = list(job.prompts)
        results = predictor.predict([job.prompts[o] for o in ids], previous=[job.previous[o] for o in ids])
        return dict(zip(ids, results))

    def write_plane(self, labels: Any, job: PlaneJob, results: Mapping[int, Any], mode: str) -> dict[int, int]:
        """Write one round's masks; returns ``{object in the job: label id written}``."""
        objects = list(results)
        ids = dict(zip(objects, assign_ids([job.requested_ids.get(o, o or None) for o in objects],
                                           np.asarray(labels.data))))
        masks = {ids[o]: results[o].mask for o in objects}
        apply_write(labels, job.labels_plane, masks, mode)
        number = recording.record_prompt_round(labels, self, job.geometry, job, ids, mode)
        rows = {}
        for o in objects:
            result, label = results[o], ids[o]
            self.memory[(job.labels_plane, label)] = result
            prompt = job.prompts[o]
            self.prompt_keys[(job.labels_plane, label)] = prompt_key(prompt)
            name = class_name_of(result.class_name, job.vocabulary)
            rows[label] = {"class_name": name or (prompt.text or "").strip(),
                           "class_score": result.class_score if name else None, "score": result.score,
                           "source": "prompt", "round": number}
        update_features(labels, rows)
        return ids

    # ------------------------------------------------------------------ segment everything
    def plan_everything(self, image: Any, geometry: Geometry, planes: list[tuple[int, ...]],
                        vocabulary: Sequence[str], threshold: float,
                        channels: tuple[int, ...] | None, strategy: str = "points") -> EverythingJob:
        if not vocabulary:
            raise PluginError("segment everything needs class names: type them in the vocabulary box, "
                              "comma-separated, e.g. nucleus, cell")
        if not 0.0 <= threshold <= 1.0:
            raise PluginError(f"the minimum score must be between 0 and 1, got {threshold}")
        if strategy not in EVERYTHING_STRATEGIES.values():
            raise PluginError(f"unknown segment-everything strategy {strategy!r}")
        return EverythingJob(image.data, geometry, planes, channels, list(vocabulary), float(threshold), strategy)

    def run_everything(self, job: EverythingJob) -> Iterator[PlaneEverything]:
        """One :class:`PlaneEverything` per plane, as each is done (worker thread)."""
        geometry = job.geometry
        for n, plane in enumerate(job.planes):
            data = job.data[geometry.image_index(plane)]
            check_finite(data, "this plane" if len(job.planes) == 1 else f"plane {n} of {len(job.planes)}")
            predictor = self.predictor_for(data, geometry.plane_channel_axis)
            predictor.set_image(data if predictor is self.tiled else np.asarray(data), geometry.plane_channel_axis,
                                job.channels)
            from napari_seem.engine import PointGrid  # torch: only once a job runs

            if job.strategy == "points":  # the minimum score is then the masks' stability
                options = {"strategy": "points", "grid": PointGrid(min_score=job.threshold)}
            else:
                options = {"object_threshold": job.threshold}
            if predictor is self.tiled:  # a large plane: tile by tile, so Cancel stops within one tile
                where = "" if len(job.planes) == 1 else f"plane {n + 1} of {len(job.planes)}: "
                steps = predictor.segment_everything_steps(job.vocabulary, **options)
                while True:
                    try:
                        done, total = next(steps)
                    except StopIteration as finished:
                        result = finished.value
                        break
                    yield Progress(f"segmenting everything: {where}tile {done} of {total}", done, total)
            else:
                result = predictor.segment_everything(job.vocabulary, **options)
            yield PlaneEverything(plane, geometry.labels_plane(plane), result, job)

    def write_everything(self, labels: Any, item: PlaneEverything, mode: str) -> list[int]:
        """Write one plane's instances with fresh ids; returns the ids that got pixels."""
        result = item.result
        ids = assign_ids([None] * len(result), np.asarray(labels.data))
        masks = {label: result.labels == n + 1 for n, label in enumerate(ids)}
        change = apply_write(labels, item.labels_plane, masks, mode)
        written = set(np.unique(change.new).tolist()) if change is not None else set()
        number = recording.record_everything_plane(labels, self, item.job, item, sorted(written), mode)
        rows = {label: {"class_name": class_name_of(result.class_names[n]), "class_score": result.scores[n],
                        "score": result.scores[n], "source": "everything", "round": number}
                for n, label in enumerate(ids) if label in written}
        update_features(labels, rows)
        return sorted(rows)

    # ------------------------------------------------------------------ propagation
    def plan_propagation(self, image: Any, geometry: Geometry, plane: tuple[int, ...], axis: int, labels: Any,
                         direction: str, frame_range: tuple[int, int] | None,
                         channels: tuple[int, ...] | None, kind: str = "time",
                         divisions: str = "lineage") -> PropagationJob:
        """Carry every object of the current frame's labels (hand-painted ones too) along ``axis``,
        a time axis or a z axis (``kind``: a nucleus ends in z, see ``VideoSession(stack_kind=)``)."""
        source = int(plane[axis])
        stop, steps = propagation_range(direction, source, geometry.shape[axis], frame_range)
        labels_plane = geometry.labels_plane(plane)
        prompts = labels_to_prompts(np.asarray(labels.data[labels_plane]))
        if not prompts:
            raise PluginError(f"nothing to propagate: frame {source} has no labels in {labels.name!r}; segment "
                              "or paint the objects on this frame first")
        return PropagationJob(AxisStack(image.data, geometry, axis, plane), channels, source, prompts, direction,
                              stop, geometry.labels_axis(axis), labels_plane, steps, kind, divisions,
                              int(np.max(labels.data)) + 1 if divisions == "split" else 1)

    def run_propagation(self, job: PropagationJob) -> Iterator[Any]:
        """``FrameResult`` per frame as it is computed (worker thread)."""
        from napari_seem.engine import VideoSession

        check_finite(job.stack[job.source], "the plane the propagation starts from")
        predictor = self.ensure_model()
        session = VideoSession(predictor, job.stack, channel_axis=job.stack.channel_axis, channels=job.channels,
                               first_new_id=job.next_id, **self.session_options(job))
        session.add_objects(job.source, job.prompts)
        yield from session.propagate(job.direction, stop=job.stop)

    def session_options(self, job: PropagationJob) -> dict[str, Any]:
        """The :class:`~napari_seem.engine.VideoSession` settings of ``job`` (recorded in provenance):
        its stack kind and divisions, then ``lost_options`` (which may pin others)."""
        return {"stack_kind": job.kind, "divisions": job.divisions, **self.lost_options}

    def write_frame(self, labels: Any, job: PropagationJob, frame: Any, mode: str) -> None:
        """Write one propagated frame: each carried object's mask; a lost object's old pixels go."""
        empty = np.zeros(job.stack.geometry.plane_shape, dtype=bool)
        masks = {o: r.mask for o, r in sorted(frame.results.items())}
        ended = set(frame.lost) | set(getattr(frame, "divided", {}))  # a mother that divided leaves her daughters
        masks.update({o: empty for o in sorted(ended) if o not in masks})
        apply_write(labels, job.labels_plane_for(frame.frame), masks, mode)
        number = recording.record_propagation_frame(labels, self, job, frame.frame, mode, self.session_options(job))
        update_features(labels, {o: {"source": "propagation", "round": number} for o in masks
                                 if o not in _labels_with_source(labels)})
        parents = {d: mother for mother, born in getattr(frame, "divided", {}).items() for d in born}
        update_features(labels, {d: {"parent_id": mother} for d, mother in parents.items()})


# ---------------------------------------------------------------------------------------- writing
def _labels_with_source(labels: Any) -> set[int]:
    """Label ids whose features row already says how the object was made."""
    features = labels.features
    if not len(features) or "source" not in features.columns or "index" not in features.columns:
        return set()
    return {int(i) for i, s in zip(features["index"], features["source"]) if isinstance(s, str) and s}


def apply_write(labels: Any, labels_plane: tuple[int, ...], masks: Mapping[int, np.ndarray], mode: str):
    """Plan and apply one plane's write through the layer's undo history; returns the change."""
    if mode not in WRITE_MODES:
        raise PluginError(f"unknown write mode {mode!r}")
    change = plan_write(labels.data, labels_plane, masks, mode)
    if len(change):
        labels.data_setitem(change.indices, change.new)
    return change


def update_features(labels: Any, rows: Mapping[int, Mapping[str, Any]]) -> None:
    """Upsert one row per object id into the labels layer's ``features`` (``index`` = label id)."""
    if not rows:
        return
    import pandas as pd

    table = {}
    current = labels.features
    if len(current) and "index" in current.columns:
        for record in current.to_dict("records"):
            table[int(record["index"])] = record
    for label, row in rows.items():
        table[int(label)] = {**table.get(int(label), {}), **row, "index": int(label)}
    frame = pd.DataFrame([table[k] for k in sorted(table)])
    columns = [c for c in FEATURE_COLUMNS if c in frame.columns]
    labels.features = frame[columns + [c for c in frame.columns if c not in columns]]


def _check_prompt(prompt: ObjectPrompt, shape: tuple[int, int], object_id: int) -> None:
    from napari_seem.prompts import validate

    try:
        validate(prompt, shape)
    except PromptError as err:
        who = "the new object" if object_id == NEW_OBJECT else f"object {object_id}"
        raise PluginError(f"bad prompt for {who}: {err}") from None
