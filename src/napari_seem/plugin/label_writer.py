"""SEEM results -> a labels array, as pure functions (no Qt, no viewer).

The user's existing labels are never silently overwritten: a write mode says what may change.

* ``"keep"`` (default): a new object takes only pixels that are background (0) or already its own;
  pixels of other objects are kept.
* ``"overwrite"``: the object's mask replaces whatever was there.
* ``"empty"``: only background pixels are written (the object's previous pixels outside the new
  mask are kept too).

In "keep" and "overwrite" an object's old pixels outside its new mask are cleared, so re-running a
prompt replaces that object's result instead of accumulating it.

:func:`plan_write` returns the exact pixel changes (indices, old and new values), so the napari glue
can apply them through the layer's undo history (``Labels.data_setitem``) and a test can check them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

import numpy as np

WriteMode = Literal["keep", "overwrite", "empty"]
WRITE_MODES = ("keep", "overwrite", "empty")


@dataclass
class LabelChange:
    """Pixel changes on one plane: ``indices`` (tuple of index arrays into the full labels array),
    the ``old`` values there and the ``new`` ones."""

    indices: tuple[np.ndarray, ...]
    old: np.ndarray
    new: np.ndarray

    def __len__(self) -> int:
        return len(self.new)


def assign_ids(requested: Sequence[int | None], existing: np.ndarray) -> list[int]:
    """Object ids for results: a requested id is kept; ``None`` gets a fresh id above every id in
    use (in ``existing`` and among the requested ones)."""
    used = {int(i) for i in requested if i is not None}
    next_id = max([int(existing.max()) if existing.size else 0, *used, 0]) + 1
    ids = []
    for r in requested:
        if r is None:
            ids.append(next_id)
            next_id += 1
        else:
            if r <= 0:
                raise ValueError(f"object ids must be positive, got {r}")
            ids.append(int(r))
    return ids


def plan_write(
    labels: np.ndarray,
    plane: tuple[int, ...],
    masks: Mapping[int, np.ndarray],
    mode: WriteMode = "keep",
) -> LabelChange:
    """Pixel changes that write ``masks`` (``{object_id: bool [H, W]}``) into ``labels[plane]``.

    ``labels`` is the whole labels array (any leading dims); ``plane`` indexes its leading dims.
    Objects are written in the mapping's order; among the new masks a later object does not take
    an earlier one's pixels, whatever the mode.
    """
    if mode not in WRITE_MODES:
        raise ValueError(f"unknown write mode {mode!r}; choose one of {WRITE_MODES}")
    current = np.asarray(labels[plane])
    if current.ndim != 2:
        raise ValueError(f"plane {plane} of labels with shape {labels.shape} is not 2D")
    updated = current.copy()
    claimed = np.zeros(current.shape, dtype=bool)
    for object_id, mask in masks.items():
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != current.shape:
            raise ValueError(f"object {object_id}: mask shape {mask.shape} != label plane {current.shape}")
        writable = _writable(current, object_id, mode) & ~claimed
        if mode != "empty":
            updated[(current == object_id) & ~mask] = 0
        updated[mask & writable] = object_id
        claimed |= mask & writable
    changed = np.nonzero(updated != current)
    indices = tuple(np.full(len(changed[0]), i) for i in plane) + changed
    return LabelChange(indices, current[changed], updated[changed])


def _writable(current: np.ndarray, object_id: int, mode: WriteMode) -> np.ndarray:
    if mode == "overwrite":
        return np.ones(current.shape, dtype=bool)
    if mode == "empty":
        return current == 0
    return (current == 0) | (current == object_id)


def apply_change(labels: np.ndarray, change: LabelChange) -> None:
    """Apply ``change`` to a plain array (the napari glue uses ``Labels.data_setitem`` instead)."""
    labels[change.indices] = change.new
