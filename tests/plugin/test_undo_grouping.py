"""One job, one undo step: a propagation (also a cancelled one) and a segment-everything over many
planes are reverted by a single Ctrl-Z of the labels layer."""

from __future__ import annotations

import numpy as np
from napari.layers import Labels
from seem_helpers import SLOW_TINY, blob_image

from napari_seem.plugin.undo import UndoGroup


def _timelapse_with_seed(viewer, widget, frames: int):
    """A synthetic time-lapse and a hand-painted object (id 1) on frame 0: its own undo step."""
    from napari_seem.plugin.samples import nuclei_timelapse

    data, _, _ = nuclei_timelapse(frames=frames, size=64)[0]
    widget.set_image_layer(viewer.add_image(data, name="cells"))
    viewer.dims.set_point(0, 0)
    labels = widget.ensure_labels_layer()
    mask = np.zeros(data.shape[1:], bool)
    mask[20:40, 20:40] = True
    labels.data_setitem((np.zeros(mask.sum(), int), *np.nonzero(mask)), 1)
    return labels, labels.data[0].copy()


def test_one_undo_reverts_a_whole_propagation(seem, qtbot):
    viewer, widget = seem
    labels, seed = _timelapse_with_seed(viewer, widget, frames=5)
    widget.propagate("forward", wait=True)
    assert all((labels.data[t] == 1).any() for t in range(1, 5))
    labels.undo()
    assert not labels.data[1:].any(), "one undo must revert every propagated frame"
    np.testing.assert_array_equal(labels.data[0], seed)  # the hand-painted frame is the step before
    labels.redo()
    assert all((labels.data[t] == 1).any() for t in range(1, 5))
    labels.undo()
    labels.undo()
    assert not labels.data.any()


def test_a_cancelled_propagation_keeps_its_frames_as_one_undo_step(seem, qtbot):
    viewer, widget = seem
    labels, seed = _timelapse_with_seed(viewer, widget, frames=10)
    widget.set_model(SLOW_TINY)  # each frame's encode sleeps 0.25 s
    written = []
    widget.frame_written.connect(written.append)
    widget.frame_written.connect(lambda frame: widget.cancel_button.click() if frame == 2 else None)
    widget.propagate_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert widget.status_label.text().startswith("cancelled") and 2 <= written[-1] < 9
    assert all((labels.data[t] == 1).any() for t in written)  # the finished frames stay written
    labels.undo()
    assert not labels.data[1:].any()
    np.testing.assert_array_equal(labels.data[0], seed)


def test_one_undo_reverts_segment_everything_over_all_planes(seem, qtbot):
    viewer, widget = seem
    widget.set_image_layer(viewer.add_image(blob_image((3, 48, 48), centre=(24, 24)), name="planes"))
    widget.role_combo.setCurrentIndex(2)  # independent 2D planes
    widget.vocabulary_edit.setText("nucleus, cell")
    widget.threshold_spin.setValue(0.0)
    widget.segment_everything(all_planes=True, wait=True)
    labels = widget.labels_layer
    assert all(labels.data[z].any() for z in range(3))
    labels.undo()
    assert not labels.data.any()


def test_the_group_commits_once_and_bare_layers_keep_one_step_per_write():
    labels = Labels(np.zeros((2, 8, 8), np.int32))
    group = UndoGroup(labels)
    labels.data_setitem((np.array([0]), np.array([1]), np.array([1])), 3)
    labels.data_setitem((np.array([1]), np.array([2]), np.array([2])), 4)
    assert group.grouping
    group.close()
    group.close()  # idempotent: nothing more is committed
    assert not group.grouping
    labels.data_setitem((np.array([1]), np.array([5]), np.array([5])), 5)  # after the group: its own step
    labels.undo()
    assert labels.data[1, 5, 5] == 0 and labels.data[0, 1, 1] == 3 and labels.data[1, 2, 2] == 4
    labels.undo()
    assert not labels.data.any()

    class Bare:  # a duck-typed layer without napari's history grouping
        data = np.zeros((4, 4))

    assert not UndoGroup(Bare()).grouping
