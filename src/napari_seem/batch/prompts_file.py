"""The prompts file of ``napari-seem segment`` and ``napari-seem propagate``: JSON, checked in full
before any work starts, with errors that name the offending entry.

The file maps an input's file name (its base name, e.g. ``"cells_01.tif"``) to a list of objects;
the key ``"*"`` gives the objects of every input that has no entry of its own::

    {
      "cells_01.tif": [
        {"id": 1, "points": [[120, 80], [130, 95, 0]]},
        {"id": 2, "boxes": [[10, 10, 60, 90]], "text": "nucleus"},
        {"scribbles": [{"points": [[5, 5], [20, 30]], "width": 3}]},
        {"text": "cell"}
      ],
      "*": [{"text": "nucleus"}]
    }

An object has at least one of:

* ``points``: ``[[y, x], ...]`` or ``[[y, x, label], ...]``, label 1 = positive (default), 0 = negative;
* ``boxes``: ``[[y0, x0, y1, x1], ...]`` (inclusive pixel corners);
* ``scribbles``: ``[{"points": [[y, x], ...], "width": 3, "positive": true}, ...]`` (width and
  positive optional), or a scribble given as its bare point list ``[[y, x], ...]``;
* ``text``: a class name or phrase.

and optionally ``id`` (a positive integer, the object's value in the label image; default: its
position in the list, 1, 2, ...) and ``frame`` (the plane of a stack the prompt is on, default 0;
for ``propagate`` the frame where the object is given). All coordinates are ``(y, x)`` = (row,
column) pixels of the full-resolution plane. Coordinates outside the image are reported when the
image is read (the shape is not known before).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from napari_seem.prompts import Box, ObjectPrompt, Point, Scribble

ALL_INPUTS = "*"
OBJECT_KEYS = {"id", "frame", "points", "boxes", "scribbles", "text"}


class PromptsFileError(ValueError):
    """A prompts file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class ObjectSpec:
    """One object of one input: label ``object_id``, on plane ``frame``, prompted by ``prompt``."""

    object_id: int
    frame: int
    prompt: ObjectPrompt


def load_prompts_file(path: str | Path) -> dict[str, list[ObjectSpec]]:
    """Read and check a prompts file: ``{file name or "*": [ObjectSpec, ...]}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise PromptsFileError(f"cannot read the prompts file {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise PromptsFileError(f"{path} is not valid JSON: {err}") from None
    return parse_prompts(data, source=str(path))


def parse_prompts(data: Any, source: str = "prompts") -> dict[str, list[ObjectSpec]]:
    """Check the decoded JSON of a prompts file (see the module docstring)."""
    if not isinstance(data, dict) or not data:
        raise PromptsFileError(f"{source}: expected a JSON object mapping file names to lists of objects, "
                               f'e.g. {{"image.tif": [{{"points": [[10, 20]]}}]}}')
    return {name: _parse_objects(objects, f"{source}: {name!r}") for name, objects in data.items()}


def _parse_objects(objects: Any, where: str) -> list[ObjectSpec]:
    if not isinstance(objects, list) or not objects:
        raise PromptsFileError(f"{where}: expected a non-empty list of objects")
    specs = [_parse_object(entry, n, f"{where} object {n}") for n, entry in enumerate(objects, start=1)]
    seen: dict[tuple[int, int], int] = {}
    for n, spec in enumerate(specs, start=1):
        key = (spec.object_id, spec.frame)
        if key in seen:
            raise PromptsFileError(f"{where} object {n}: id {spec.object_id} on frame {spec.frame} is also "
                                   f"object {seen[key]}; give each object its own id (merge the prompts of one object)")
        seen[key] = n
    return specs


def _parse_object(entry: Any, position: int, where: str) -> ObjectSpec:
    if not isinstance(entry, dict):
        raise PromptsFileError(f"{where}: expected an object like {{\"points\": [[y, x]]}}, got {entry!r}")
    unknown = sorted(set(entry) - OBJECT_KEYS)
    if unknown:
        raise PromptsFileError(f"{where}: unknown keys {unknown}; allowed: {sorted(OBJECT_KEYS)}")
    object_id = _index(entry.get("id", position), f"{where}: id", minimum=1)
    frame = _index(entry.get("frame", 0), f"{where}: frame", minimum=0)
    prompt = ObjectPrompt(
        points=[_point(p, f"{where}: points[{i}]") for i, p in enumerate(_list(entry, "points", where))],
        boxes=[_box(b, f"{where}: boxes[{i}]") for i, b in enumerate(_list(entry, "boxes", where))],
        scribbles=[_scribble(s, f"{where}: scribbles[{i}]") for i, s in enumerate(_list(entry, "scribbles", where))],
        text=_text(entry.get("text"), f"{where}: text"),
    )
    if prompt.is_empty():
        raise PromptsFileError(f"{where}: no prompt; give points, boxes, scribbles or text")
    return ObjectSpec(object_id, frame, prompt)


def _list(entry: dict, key: str, where: str) -> list:
    value = entry.get(key, [])
    if not isinstance(value, list):
        raise PromptsFileError(f"{where}: {key} must be a list, got {value!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PromptsFileError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _index(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PromptsFileError(f"{where}: expected an integer >= {minimum}, got {value!r}")
    return value


def _yx(value: Any, where: str, sizes: Sequence[int], form: str) -> list[float]:
    if not isinstance(value, list) or len(value) not in sizes:
        raise PromptsFileError(f"{where}: expected {form}, got {value!r}")
    return [_number(v, where) for v in value]


def _point(value: Any, where: str) -> Point:
    numbers = _yx(value, where, (2, 3), "[y, x] or [y, x, label] with label 1 (positive) or 0 (negative)")
    if len(numbers) == 3 and numbers[2] not in (0.0, 1.0):
        raise PromptsFileError(f"{where}: the label must be 1 (positive) or 0 (negative), got {value[2]!r}")
    return Point(numbers[0], numbers[1], positive=len(numbers) == 2 or numbers[2] == 1.0)


def _box(value: Any, where: str) -> Box:
    y0, x0, y1, x1 = _yx(value, where, (4,), "[y0, x0, y1, x1]")
    if round(y0) == round(y1) or round(x0) == round(x1):
        raise PromptsFileError(f"{where}: a box needs a non-zero height and width, got {value!r}")
    return Box(y0, x0, y1, x1)


def _scribble(value: Any, where: str) -> Scribble:
    if isinstance(value, list):
        value = {"points": value}
    if not isinstance(value, dict) or set(value) - {"points", "width", "positive"}:
        raise PromptsFileError(f"{where}: expected {{\"points\": [[y, x], ...], \"width\": 3, \"positive\": true}} "
                               f"or a list of [y, x], got {value!r}")
    points = value.get("points")
    if not isinstance(points, list) or not points:
        raise PromptsFileError(f"{where}: points must be a non-empty list of [y, x]")
    yx = tuple(tuple(_yx(p, f"{where} point {i}", (2,), "[y, x]")) for i, p in enumerate(points))
    width = _number(value.get("width", 3.0), f"{where}: width")
    if width <= 0:
        raise PromptsFileError(f"{where}: width must be positive, got {width:g}")
    positive = value.get("positive", True)
    if not isinstance(positive, bool):
        raise PromptsFileError(f"{where}: positive must be true or false, got {positive!r}")
    return Scribble(yx, width, positive)


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise PromptsFileError(f"{where}: expected a non-blank string, got {value!r}")
    return value.strip()


def prompts_for_inputs(prompts: dict[str, list[ObjectSpec]], inputs: Sequence[Path],
                       source: str = "prompts") -> tuple[list[list[ObjectSpec]], list[str]]:
    """Each input's objects (by file name, else ``"*"``), and the entries that name no input (one
    prompts file may serve several runs over parts of a folder; the caller warns about them, since
    they may be typos). An input without objects is an error."""
    names = [p.name for p in inputs]
    unused = sorted(set(prompts) - set(names) - {ALL_INPUTS})
    missing = [n for n in names if n not in prompts and ALL_INPUTS not in prompts]
    if missing:
        hint = f" (entries naming no input: {_shorten(unused)})" if unused else ""
        raise PromptsFileError(f"{source}: no prompts for {_shorten(missing)}; add entries for them "
                               f'or a "{ALL_INPUTS}" entry for all inputs{hint}')
    return [prompts.get(n, prompts.get(ALL_INPUTS)) for n in names], unused


def _shorten(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
