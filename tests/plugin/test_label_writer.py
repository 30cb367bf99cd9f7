"""Results -> labels: fresh ids, write modes that never silently overwrite, exact changes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.plugin.label_writer import apply_change, assign_ids, plan_write


def _labels():
    labels = np.zeros((2, 6, 6), np.int32)
    labels[1, 0:3, 0:3] = 5  # the user's existing object
    return labels


def _square(y0, y1, x0, x1):
    m = np.zeros((6, 6), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_new_objects_get_fresh_ids_and_picked_ids_are_reused():
    assert assign_ids([None, 3, None], _labels()) == [6, 3, 7]
    assert assign_ids([None], np.zeros((4, 4), int)) == [1]
    with pytest.raises(ValueError, match="positive"):
        assign_ids([0], _labels())


def test_keep_mode_never_takes_another_objects_pixels():
    labels = _labels()
    change = plan_write(labels, (1,), {6: _square(1, 5, 1, 5)}, mode="keep")
    apply_change(labels, change)
    assert (labels[1, 0:3, 0:3] == 5).all()  # existing object untouched
    assert (labels[1, 3:5, 3:5] == 6).all() and labels[1, 1, 4] == 6
    assert (labels[0] == 0).all()  # other planes untouched


def test_overwrite_and_empty_modes():
    labels = _labels()
    apply_change(labels, plan_write(labels, (1,), {6: _square(1, 5, 1, 5)}, mode="overwrite"))
    assert (labels[1, 1:5, 1:5] == 6).all() and labels[1, 0, 0] == 5
    labels = _labels()
    apply_change(labels, plan_write(labels, (1,), {5: _square(2, 5, 2, 5)}, mode="empty"))
    assert (labels[1, 0:3, 0:3] == 5).all() and (labels[1, 3:5, 3:5] == 5).all()


def test_rewriting_an_object_replaces_its_old_pixels_and_change_is_exact():
    labels = _labels()
    change = plan_write(labels, (1,), {5: _square(3, 6, 3, 6)}, mode="keep")
    assert set(change.old.tolist()) <= {0, 5} and len(change) == 9 + 9
    apply_change(labels, change)
    assert labels[1, 0, 0] == 0 and (labels[1, 3:6, 3:6] == 5).all()
    undo = labels.copy()
    undo[change.indices] = change.old
    assert np.array_equal(undo, _labels())


def test_bad_plane_mask_or_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="not 2D"):
        plan_write(_labels(), (), {1: _square(0, 1, 0, 1)})
    with pytest.raises(ValueError, match="mask shape"):
        plan_write(_labels(), (0,), {1: np.ones((3, 3), bool)})
    with pytest.raises(ValueError, match="unknown write mode"):
        plan_write(_labels(), (0,), {1: _square(0, 1, 0, 1)}, mode="replace")
