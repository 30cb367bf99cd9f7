"""Replaying a labels layer's provenance without napari.

:mod:`napari_seem.plugin.recording` records each round the controller writes; :func:`replay` turns
the rounds back into the same jobs and runs them through the same controller code (``run_*`` then
``write_*``) on a plain labels array, so on the same model and image it gives identical labels.

No Qt here; torch only once a replay loads a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from napari_seem.prompts import MaskPrompt, ObjectPrompt
from napari_seem.provenance import ProvenanceError, ProvenanceLog, decode_mask, load, prompt_from_json

from .controller import AxisStack, EverythingJob, Geometry, PlaneJob, PropagationJob, SeemController
from .recording import weights_digest


# ------------------------------------------------------------------------------------------ replay
class ArrayLabels:
    """A plain labels array with the layer interface the controller writes through."""

    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        import pandas as pd

        self.data = np.zeros(shape, dtype=dtype)
        self.features = pd.DataFrame()
        self.metadata: dict[str, Any] = {}
        self.name = "replay"

    def data_setitem(self, indices: tuple, values: np.ndarray) -> None:
        self.data[indices] = values


@dataclass
class ReplayResult:
    """What :func:`replay` made: the ``labels`` array, the per-object ``features`` table, the log it
    replayed, whether the model's weights were the recorded ones, and the replayed labels' own
    ``metadata`` (their provenance, recorded as they were written: what a writer saves with them)."""

    labels: np.ndarray
    features: Any
    log: ProvenanceLog
    same_model: bool
    weights_digest: str
    metadata: dict

    def agreement(self, labels: np.ndarray) -> dict[int, float]:
        """IoU per object id between these labels and ``labels`` (e.g. the saved ones): an audit."""
        labels = np.asarray(labels)
        if labels.shape != self.labels.shape:
            raise ValueError(f"labels of shape {labels.shape} cannot be compared with {self.labels.shape}")
        ids = sorted((set(np.unique(labels)) | set(np.unique(self.labels))) - {0})
        out = {}
        for i in ids:
            a, b = labels == i, self.labels == i
            out[int(i)] = float((a & b).sum() / max((a | b).sum(), 1))
        return out


def replay(provenance: Any, image: Any, model: Any = None, *, checkpoint: str | None = None,
           references: Mapping[str, np.ndarray] | None = None, device: str = "cpu",
           threads: int | None = None) -> ReplayResult:
    """Re-run recorded rounds on ``image`` and return the labels they make.

    ``provenance``: a ``*.provenance.json`` path, its JSON text, its dict or a :class:`ProvenanceLog`.
    ``image``: an array of the recorded image's shape (the same image for an audit, or another one).
    ``model``: a built SEEM model, or a model menu name (with ``checkpoint``); default: the recorded
    model, if it can be loaded here. ``references``: reference images of reference-region prompts
    (by digest; the writer saves them in ``*.provenance.npz``). ``threads``: CPU threads for the model
    (default: the plugin's default).
    """
    log = provenance if isinstance(provenance, ProvenanceLog) else load(provenance)
    header = log.header
    image = np.asarray(image) if not hasattr(image, "shape") else image
    recorded = header.get("image", {})
    if list(image.shape) != list(recorded.get("shape", image.shape)):
        raise ProvenanceError(f"the image has shape {tuple(image.shape)} but the rounds were recorded on an image "
                              f"of shape {tuple(recorded['shape'])}: replay needs an image of the same shape")
    geometry = Geometry(tuple(int(s) for s in image.shape), bool(recorded.get("rgb", False)),
                        recorded.get("channel_axis"))
    controller = SeemController()
    if threads is not None:
        controller.threads = int(threads)
    _choose_model(controller, header.get("model", {}), model, checkpoint, device)
    controller.lost_options = dict(header.get("engine", {}).get("propagation", {}))
    controller.ensure_model()
    labels_info = header.get("labels", {})
    labels = ArrayLabels(tuple(labels_info.get("shape", geometry.labels_shape)),
                         np.dtype(labels_info.get("dtype", "<i4")))
    for entry in log.rounds:
        kind = entry.get("kind")
        if kind == "prompt":
            _replay_prompt(controller, labels, geometry, image, entry, references)
        elif kind == "everything":
            _replay_everything(controller, labels, geometry, image, entry)
        elif kind == "propagation":
            _replay_propagation(controller, labels, geometry, image, entry)
        elif kind == "reference":
            _replay_reference(controller, labels, geometry, image, entry, references)
        else:
            raise ProvenanceError(f"round {entry.get('round')}: unknown kind {kind!r}")
    digest = weights_digest(controller.loaded.model)
    same = digest == header.get("model", {}).get("weights_digest")
    return ReplayResult(labels.data, labels.features, log, same, digest, labels.metadata)


def _choose_model(controller: Any, recorded: Mapping[str, Any], model: Any, checkpoint: str | None,
                  device: str) -> None:
    if model is not None and not isinstance(model, str):
        controller.use_model(model, "a model given to replay", int(recorded.get("target_size", 512)))
        return
    from . import models

    name = model if isinstance(model, str) else recorded.get("name")
    if name is None or name == "custom" or name not in models.available_models():
        raise ProvenanceError(f"the rounds were made with {recorded.get('weights', 'an unnamed model')!r}, which "
                              "cannot be loaded by name here: pass model= (a built model or a model menu name)")
    controller.set_model(name, checkpoint if checkpoint is not None else recorded.get("checkpoint"), device)


def _replay_prompt(controller, labels, geometry, image, entry, references) -> None:
    plane = tuple(int(v) for v in entry["plane"])
    labels_plane = geometry.labels_plane(plane)
    prompts, requested = {}, {}
    for n, obj in enumerate(entry["objects"]):
        key = obj["requested"] if obj["requested"] is not None else -(n + 1)  # new objects: distinct keys
        prompts[key] = prompt_from_json(obj["prompt"], references)
        requested[key] = obj["requested"]
    job = PlaneJob(data=image, index=geometry.image_index(plane), plane=plane, labels_plane=labels_plane,
                   geometry=geometry,
                   channel_axis=geometry.plane_channel_axis, channels=_tuple(entry.get("channels")),
                   prompts=prompts, previous={k: _previous(controller, labels_plane, v) for k, v in requested.items()},
                   vocabulary=entry.get("vocabulary"), requested_ids=requested)
    results = controller.run_plane(job)
    ids = controller.write_plane(labels, job, results, entry["write_mode"])
    expected = [int(o["label"]) for o in entry["objects"]]
    if [ids[k] for k in prompts] != expected:
        raise ProvenanceError(f"round {entry['round']}: the objects got ids {[ids[k] for k in prompts]} where the "
                              f"record says {expected}: the labels differ from the recorded ones before this round")


def _previous(controller, labels_plane, requested):
    return None if requested is None else controller.memory.get((labels_plane, int(requested)))


def _replay_everything(controller, labels, geometry, image, entry) -> None:
    planes = [tuple(int(v) for v in p) for p in entry["planes"]]
    job = EverythingJob(image, geometry, planes, _tuple(entry.get("channels")), list(entry["vocabulary"]),
                        float(entry["threshold"]), entry.get("strategy", "points"))
    for item in controller.run_everything(job):
        controller.write_everything(labels, item, entry["write_mode"])


def _replay_propagation(controller, labels, geometry, image, entry) -> None:
    plane = tuple(int(v) for v in entry["plane"])
    axis = int(entry["axis"])
    labels_plane = geometry.labels_plane(plane)
    current = np.asarray(labels.data[labels_plane])
    prompts = {int(v): ObjectPrompt(masks=[MaskPrompt(current == v)]) for v in np.unique(current) if v != 0}
    for key, code in entry.get("source_masks", {}).items():  # objects painted by hand before the round
        prompts.setdefault(int(key), ObjectPrompt(masks=[MaskPrompt(decode_mask(code))]))
    stop = entry["stop"]
    stop = tuple(stop) if isinstance(stop, list) else int(stop)
    frames = [int(f) for f in entry["frames"]]
    job = PropagationJob(AxisStack(image, geometry, axis, plane), _tuple(entry.get("channels")), int(plane[axis]),
                         dict(sorted(prompts.items())), entry["direction"], stop, geometry.labels_axis(axis),
                         labels_plane, len(frames), entry.get("session", {}).get("stack_kind", "time"),
                         entry.get("session", {}).get("divisions", "lineage"), int(np.max(labels.data)) + 1)
    session_options = dict(entry.get("session", {}))
    saved, controller.lost_options = controller.lost_options, session_options or controller.lost_options
    try:
        remaining = list(frames)
        for frame in controller.run_propagation(job):
            if not remaining:
                break
            controller.write_frame(labels, job, frame, entry["write_mode"])
            if int(frame.frame) in remaining:
                remaining.remove(int(frame.frame))
            if not remaining:
                break
    finally:
        controller.lost_options = saved


def _replay_reference(controller, labels, geometry, image, entry, references) -> None:
    from .reference import ReferenceJob, run_reference, write_reference

    region = prompt_from_json({"reference": entry["reference"]}, references).reference
    job = ReferenceJob(image, geometry, tuple(int(v) for v in entry["plane"]), _tuple(entry.get("channels")),
                       np.asarray(region.image), region.mask, int(entry["min_area"]), entry.get("source", ""))
    write_reference(controller, labels, job, run_reference(controller, job), entry["write_mode"])


def _tuple(value: Any) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(v) for v in value)
