"""Recording the plugin's rounds into a labels layer's provenance, as they are written.

Each ``record_*`` function turns one of :class:`~napari_seem.plugin.controller.SeemController`'s jobs,
right after it was written into a labels layer, into a round of the layer's
:class:`~napari_seem.provenance.ProvenanceLog` (kept in ``labels.metadata``).
:mod:`napari_seem.plugin.replay` turns the rounds back into the same jobs. The controller calls these
functions; they do not import it. No Qt, no torch at import.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any, Mapping

import numpy as np

from napari_seem.provenance import (
    METADATA_KEY,
    REFERENCES_KEY,
    ProvenanceLog,
    encode_mask,
    labels_fingerprint,
    prompt_to_json,
)
from napari_seem.prompts import ObjectPrompt, ReferenceRegion

def weights_digest(model: Any) -> str:
    """The model's fingerprint (sha256 of its weights and config; cached on the model): the same one
    the feature cache keys on."""
    from napari_seem.engine.feature_cache import model_fingerprint  # torch: only once a model exists

    return model_fingerprint(model)


def _log_of(labels: Any, controller: Any, geometry: Any, data: Any, written: Any = ()) -> ProvenanceLog:
    """The labels layer's log, started with a header on the first round (``written``: the ids that
    round wrote; any other id already in the labels was there before, e.g. painted by hand)."""
    metadata = labels.metadata
    stored = metadata.get(METADATA_KEY)
    if stored:
        return ProvenanceLog.from_dict(stored)
    name, checkpoint, device = controller.model_choice
    loaded = controller.loaded
    header = {
        "napari_seem_version": _version(),
        "model": {"name": name, "checkpoint": checkpoint, "weights": loaded.weights,
                  "weights_digest": weights_digest(loaded.model), "target_size": loaded.target_size},
        "image": {"shape": [int(s) for s in geometry.shape], "rgb": bool(geometry.rgb),
                  "channel_axis": geometry.channel_axis, "dtype": np.dtype(data.dtype).str},
        "labels": {"shape": [int(s) for s in labels.data.shape], "dtype": np.dtype(labels.data.dtype).str},
        "engine": {"tiling_factor": controller.tiling_factor, "propagation": dict(controller.lost_options)},
        "labels_before_first_round": sorted(int(i) for i in set(np.unique(np.asarray(labels.data)).tolist())
                                            - {0} - {int(i) for i in written}),
    }
    return ProvenanceLog(header)


def _version() -> str:
    try:
        return importlib.metadata.version("napari-seem")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a source tree not installed
        return "unknown"


def _model_digest(controller: Any) -> str | None:
    loaded = controller.loaded
    return None if loaded is None else weights_digest(loaded.model)


def _store(labels: Any, log: ProvenanceLog) -> None:
    labels.metadata[METADATA_KEY] = log.to_dict()


def record_prompt_round(labels: Any, controller: Any, geometry: Any, job: Any, ids: Mapping[int, int],
                        mode: str) -> int | None:
    """Record a written :class:`PlaneJob` (``ids``: object in the job -> label written); returns the
    round number."""
    if geometry is None or getattr(labels, "metadata", None) is None:
        return None  # a job made outside plan_plane, or a layer without metadata: nothing to record
    log = _log_of(labels, controller, geometry, job.data, ids.values())
    references = labels.metadata.setdefault(REFERENCES_KEY, {})
    objects = [{"requested": job.requested_ids.get(o, o or None), "label": int(ids[o]),
                "prompt": prompt_to_json(job.prompts[o], references)} for o in ids]
    if not references:
        labels.metadata.pop(REFERENCES_KEY, None)
    record = {"weights_digest": _model_digest(controller), "plane": list(job.plane), "channels": _list(job.channels), "vocabulary": job.vocabulary,
              "write_mode": mode, "objects": objects}
    number = log.add_round("prompt", record, np.asarray(labels.data))
    _store(labels, log)
    return number


def record_everything_plane(labels: Any, controller: Any, job: Any, item: Any, written: list[int],
                            mode: str) -> int | None:
    """Record one plane of a written :class:`EverythingJob` (``item``: its ``PlaneEverything``)."""
    if job is None or getattr(labels, "metadata", None) is None:
        return None
    log = _log_of(labels, controller, job.geometry, job.data, written)
    record = {"weights_digest": _model_digest(controller), "planes": [list(item.plane)], "channels": _list(job.channels), "vocabulary": job.vocabulary,
              "threshold": job.threshold, "strategy": job.strategy, "write_mode": mode,
              "labels": [int(i) for i in written]}
    number = log.add_round("everything", record, np.asarray(labels.data))
    _store(labels, log)
    return number


def record_propagation_frame(labels: Any, controller: Any, job: Any, frame: int, mode: str,
                             options: Mapping[str, Any]) -> int | None:
    """Record one written frame of a :class:`PropagationJob`: the first frame starts the round, later
    ones extend its frame list. ``options``: the video session's settings."""
    if getattr(labels, "metadata", None) is None:
        return None
    stack = job.stack
    log = _log_of(labels, controller, stack.geometry, stack.data, job.prompts)
    number = getattr(job, "provenance_round", None)
    if number is not None and log.rounds and log.rounds[-1].get("round") == number:
        last = log.rounds[-1]
        last["frames"].append(int(frame))
        last["labels_after"] = labels_fingerprint(np.asarray(labels.data))
        _store(labels, log)
        return number
    record = {"weights_digest": _model_digest(controller), "plane": list(stack.plane), "axis": int(stack.axis), "direction": job.direction,
              "stop": _list(job.stop) if isinstance(job.stop, tuple) else int(job.stop),
              "channels": _list(job.channels), "write_mode": mode, "session": dict(options),
              "source_masks": {str(o): encode_mask(p.masks[0].mask) for o, p in job.prompts.items()},
              "frames": [int(frame)]}
    number = log.add_round("propagation", record, np.asarray(labels.data))
    job.provenance_round = number  # later frames of this job extend the same round
    _store(labels, log)
    return number


def _list(value: Any) -> list | None:
    return None if value is None else [int(v) for v in value]




def record_reference_round(labels: Any, controller: Any, job: Any, ids: list[int], written: list[int],
                           mode: str) -> int | None:
    """Record a written "find more like this" job (``ids``: one per match, ``written``: those with pixels)."""
    if getattr(labels, "metadata", None) is None:
        return None
    log = _log_of(labels, controller, job.geometry, job.data, written)
    references = labels.metadata.setdefault(REFERENCES_KEY, {})
    region = prompt_to_json(ObjectPrompt(reference=ReferenceRegion(job.reference_image, job.region)), references)
    record = {"weights_digest": _model_digest(controller), "plane": list(job.plane), "channels": _list(job.channels),
              "reference": region["reference"], "min_area": int(job.min_area), "source": job.source,
              "write_mode": mode, "labels": [int(i) for i in ids], "written": [int(i) for i in written]}
    number = log.add_round("reference", record, np.asarray(labels.data))
    _store(labels, log)
    return number
