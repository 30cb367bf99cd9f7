"""How every object in a labels layer was made, as plain JSON that can be replayed.

A :class:`ProvenanceLog` is the ordered list of *rounds* that wrote to one labels layer: a prompted
round on one plane (the objects' full prompts, the ids they were written under), a
segment-everything run, or a propagation. With the model (name and a hash of its weights), the
engine settings and the napari-seem version, that is enough for
:func:`napari_seem.replay` to run the same rounds again, on the same model (an audit: the labels come
back identical) or on another one (the annotation regenerated with a better model).

The log is kept in the labels layer's ``metadata["napari_seem_provenance"]`` (a JSON-ready dict) and
the napari-seem writer saves it beside the labels as ``<name>.provenance.json``. Every object's row
in the layer's features names the round that last wrote it (column ``round``).

Each round also stores a fingerprint of the labels right after it was written. When the log is
saved, rounds that were undone afterwards (the labels went back to an earlier round's state) are
dropped, and if the labels match no round's state (painted by hand after the last round) the log
says so (``"edited_after_last_round": true``): such edits are not replayable.

Masks (mask prompts, reference regions) are stored run-length encoded (:func:`encode_mask`).
No torch and no napari here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, ReferenceRegion, Scribble

FORMAT = "napari-seem provenance"
FORMAT_VERSION = 1
METADATA_KEY = "napari_seem_provenance"
REFERENCES_KEY = "napari_seem_references"  # layer metadata: {digest: reference image}, saved as .npz
ROUND_KINDS = ("prompt", "everything", "propagation", "reference")
# Labels larger than this are not fingerprinted (hashing them after every round would be slow);
# their log then cannot tell undone rounds from live ones.
FINGERPRINT_MAX_BYTES = 512 * 2**20


class ProvenanceError(ValueError):
    """A provenance file or record that cannot be read or replayed."""


# ------------------------------------------------------------------------------------------- masks
def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Run-length code of a bool mask: ``{"shape": [H, W], "runs": [start, length, ...]}`` over the
    C-order flattened mask (starts of the True runs)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    runs = np.stack([starts, ends - starts], axis=1).ravel()
    return {"shape": [int(s) for s in np.shape(mask)], "runs": [int(v) for v in runs]}


def decode_mask(code: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_mask`."""
    try:
        shape = tuple(int(s) for s in code["shape"])
        runs = np.asarray(code["runs"], dtype=np.int64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError) as err:
        raise ProvenanceError(f"a stored mask is malformed: {err}") from None
    flat = np.zeros(int(np.prod(shape)), dtype=bool)
    for start, length in runs:
        flat[start : start + length] = True
    return flat.reshape(shape)


def array_digest(array: np.ndarray) -> str:
    """A short content hash of an array (its shape, dtype and bytes)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.shape}{array.dtype.str}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def labels_fingerprint(labels: np.ndarray) -> str | None:
    """:func:`array_digest` of a labels array, or None when it is too large to hash per round."""
    labels = np.asarray(labels)
    return None if labels.nbytes > FINGERPRINT_MAX_BYTES else array_digest(labels)


# ------------------------------------------------------------------------------------------- prompts
def prompt_to_json(prompt: ObjectPrompt, references: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """One object's prompts as JSON-ready data. A reference region on another image stores that
    image's digest (and registers the array in ``references`` under it, for the caller to keep)."""
    out: dict[str, Any] = {}
    if prompt.points:
        out["points"] = [[float(p.y), float(p.x), bool(p.positive)] for p in prompt.points]
    if prompt.boxes:
        out["boxes"] = [[float(b.y0), float(b.x0), float(b.y1), float(b.x1)] for b in prompt.boxes]
    if prompt.scribbles:
        out["scribbles"] = [{"points": [[float(y), float(x)] for y, x in s.points], "width": float(s.width),
                             "positive": bool(s.positive)} for s in prompt.scribbles]
    if prompt.masks:
        out["masks"] = [{**encode_mask(m.mask), "positive": bool(m.positive)} for m in prompt.masks]
    if prompt.text:
        out["text"] = prompt.text
    if prompt.reference is not None:
        ref = prompt.reference
        if isinstance(ref.image, (int, np.integer)):
            source: dict[str, Any] = {"frame": int(ref.image)}
        else:
            image = np.asarray(ref.image)
            digest = array_digest(image)
            if references is not None:
                references[digest] = image
            source = {"image": digest, "image_shape": list(image.shape), "image_dtype": image.dtype.str}
        out["reference"] = {**source, "mask": encode_mask(ref.mask)}
    return out


def prompt_from_json(data: Mapping[str, Any], references: Mapping[str, np.ndarray] | None = None) -> ObjectPrompt:
    """Inverse of :func:`prompt_to_json`; ``references`` maps image digests to the reference images."""
    try:
        prompt = ObjectPrompt(
            points=[Point(float(y), float(x), bool(pos)) for y, x, pos in data.get("points", [])],
            boxes=[Box(*(float(v) for v in box)) for box in data.get("boxes", [])],
            scribbles=[Scribble(tuple((float(y), float(x)) for y, x in s["points"]), float(s["width"]),
                                bool(s["positive"])) for s in data.get("scribbles", [])],
            masks=[MaskPrompt(decode_mask(m), bool(m["positive"])) for m in data.get("masks", [])],
            text=data.get("text"),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ProvenanceError(f"a stored prompt is malformed ({err!r}): {dict(data)!r:.200}") from None
    ref = data.get("reference")
    if ref is not None:
        if "frame" in ref:
            image: np.ndarray | int = int(ref["frame"])
        else:
            image = (references or {}).get(ref["image"])
            if image is None:
                raise ProvenanceError(
                    f"a reference-region prompt needs its reference image (shape {ref.get('image_shape')}, "
                    f"digest {ref['image']}): pass it in references={{digest: array}}")
        prompt.reference = ReferenceRegion(image, decode_mask(ref["mask"]))
    return prompt


# ------------------------------------------------------------------------------------------- the log
class ProvenanceLog:
    """The rounds that wrote one labels layer (see the module docstring)."""

    def __init__(self, header: Mapping[str, Any] | None = None, rounds: list[dict] | None = None) -> None:
        self.header: dict[str, Any] = dict(header or {})
        self.rounds: list[dict[str, Any]] = list(rounds or [])

    def add_round(self, kind: str, record: Mapping[str, Any], labels: np.ndarray) -> int:
        """Append a round of ``kind`` (``record``: JSON-ready data) written into ``labels``; returns
        its number (1-based, the features' ``round`` column)."""
        if kind not in ROUND_KINDS:
            raise ValueError(f"unknown round kind {kind!r}; expected one of {ROUND_KINDS}")
        number = len(self.rounds) + 1
        self.rounds.append({"round": number, "kind": kind, **record, "labels_after": labels_fingerprint(labels)})
        return number

    def live(self, labels: np.ndarray) -> "ProvenanceLog":
        """The log as it stands for ``labels`` now: rounds undone afterwards are dropped, and hand edits
        after the last live round are flagged (see the module docstring)."""
        current = labels_fingerprint(labels)
        rounds, edited = list(self.rounds), False
        if current is not None:
            states = [r.get("labels_after") for r in rounds]
            if current in states:
                rounds = rounds[: len(states) - states[::-1].index(current)]
            elif rounds or np.asarray(labels).any():
                edited = True
        header = {**self.header, "edited_after_last_round": edited}
        return ProvenanceLog(header, rounds)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **self.header, "rounds": self.rounds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ProvenanceLog":
        if data.get("format") != FORMAT:
            raise ProvenanceError(f"not a napari-seem provenance record (format {data.get('format')!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise ProvenanceError(f"provenance format version {data['format_version']} is newer than this "
                                  f"napari-seem reads ({FORMAT_VERSION}): update napari-seem")
        header = {k: v for k, v in data.items() if k not in ("format", "format_version", "rounds")}
        rounds = data.get("rounds")
        if not isinstance(rounds, list):
            raise ProvenanceError("the provenance record has no list of rounds")
        return cls(header, [dict(r) for r in rounds])


def provenance_path(labels_path: str | Path) -> Path:
    """Where the writer puts the provenance of ``labels_path``: ``<stem>.provenance.json`` beside it."""
    path = Path(labels_path)
    return path.with_name(f"{path.stem}.provenance.json")


def references_path(labels_path: str | Path) -> Path:
    """Where the writer puts the reference images of reference-region prompts: ``<stem>.provenance.npz``."""
    path = Path(labels_path)
    return path.with_name(f"{path.stem}.provenance.npz")


def save_beside(labels_path: str | Path, labels: np.ndarray, metadata: Mapping[str, Any]) -> list[str]:
    """Save the provenance kept in a labels layer's ``metadata`` beside ``labels_path`` (the live rounds
    for ``labels`` as they are now, and any reference images); returns the paths written (none when
    the layer has no provenance)."""
    stored = metadata.get(METADATA_KEY) if metadata else None
    if not stored:
        return []
    written = [str(save(ProvenanceLog.from_dict(stored).live(labels), provenance_path(labels_path)))]
    references = metadata.get(REFERENCES_KEY) or {}
    if references:
        target = references_path(labels_path)
        tmp = target.with_name(f".{target.stem}.partial.npz")
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in references.items()})
        tmp.replace(target)
        written.append(str(target))
    return written


def load_references(path: str | Path) -> dict[str, np.ndarray]:
    """The reference images saved by :func:`save_beside` (empty when there is no such file)."""
    path = Path(path)
    if not path.is_file():
        return {}
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def save(log: ProvenanceLog | Mapping[str, Any], path: str | Path) -> Path:
    """Write a log (or its dict) as JSON; returns the path."""
    data = log.to_dict() if isinstance(log, ProvenanceLog) else dict(log)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def load(source: str | Path | Mapping[str, Any]) -> ProvenanceLog:
    """A log from a JSON file, a JSON string or an already parsed dict."""
    if isinstance(source, Mapping):
        return ProvenanceLog.from_dict(source)
    text = str(source)
    if text.lstrip().startswith("{"):
        data = json.loads(text)
    else:
        path = Path(source)
        if not path.is_file():
            raise ProvenanceError(f"no provenance file at {path}")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ProvenanceError(f"{path} is not a JSON provenance file: {err}") from None
    if not isinstance(data, Mapping):
        raise ProvenanceError("a provenance record is a JSON object")
    return ProvenanceLog.from_dict(data)
