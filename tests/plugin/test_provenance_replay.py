"""Provenance round trip in a real viewer: annotate, save with the plugin's writer, replay: identical.

Annotating writes each round into the labels layer's provenance; saving puts it beside the TIFF;
:func:`napari_seem.replay` re-runs the rounds on the same model and image and must give the very
labels that were saved. An undone round is not replayed; a hand edit after the last round is flagged.
"""

from __future__ import annotations

import json

import numpy as np
import tifffile
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest
from seem_helpers import TINY

import napari_seem
from napari_seem import provenance


def _timelapse(viewer, widget, frames=5):
    from napari_seem.plugin.samples import nuclei_timelapse

    data, _, _ = nuclei_timelapse(frames=frames, size=64)[0]
    layer = viewer.add_image(data, name="cells")
    widget.set_image_layer(layer)
    return data


def _annotate(viewer, widget):
    """Clicks (two rounds on one object, with memory), a box, text, segment-everything, propagation."""
    points, shapes = widget.ensure_prompt_layers()
    viewer.dims.set_point(0, 0)
    points.add([[0, 20, 20]])
    widget.segment_plane(wait=True)  # a new object
    widget.set_negative(True)
    points.add([[0, 5, 5]])
    widget.segment_plane(wait=True)  # its second round: the first as memory
    widget.set_negative(False)
    widget.set_object(0)
    shapes.add_rectangles(np.array([[0, 36, 36], [0, 36, 56], [0, 56, 56], [0, 56, 36]], float))
    widget.segment_plane(wait=True)
    widget.set_object(0)
    widget.text_edit.setText("nucleus")
    widget.segment_plane(wait=True)
    widget.text_edit.setText("")
    viewer.dims.set_point(0, 4)
    widget.vocabulary_edit.setText("nucleus, cell")
    widget.threshold_spin.setValue(0.0)
    widget.segment_everything(wait=True)
    viewer.dims.set_point(0, 0)
    widget.propagate("forward", frame_range=(0, 3), wait=True)


def test_annotate_save_replay_gives_identical_labels(seem, qtbot, tmp_path):
    viewer, widget = seem
    image = _timelapse(viewer, widget)
    _annotate(viewer, widget)
    labels = widget.labels_layer
    assert not widget.last_error
    kinds = [r["kind"] for r in labels.metadata[provenance.METADATA_KEY]["rounds"]]
    assert kinds == ["prompt"] * 4 + ["everything", "propagation"]
    assert "round" in labels.features.columns and labels.features["round"].notna().all()

    saved = labels.save(str(tmp_path / "cells_labels.tif"), plugin="napari-seem")
    record = tmp_path / "cells_labels.provenance.json"
    assert record.is_file() and str(record) in saved
    data = json.loads(record.read_text())
    assert data["model"]["name"] == TINY and data["model"]["weights_digest"]
    assert data["napari_seem_version"] and data["image"]["shape"] == list(image.shape)
    assert data["rounds"][0]["objects"][0]["prompt"]["points"] == [[20.0, 20.0, True]]
    assert not data["edited_after_last_round"]

    result = napari_seem.replay(record, image)  # the recorded model, by its menu name
    written = tifffile.imread(tmp_path / "cells_labels.tif")
    assert result.same_model
    assert (np.unique(written) != 0).sum() >= 3  # several objects, on several frames
    np.testing.assert_array_equal(result.labels, written)
    assert all(iou == 1.0 for iou in result.agreement(written).values())


def test_an_undone_round_is_not_saved_and_a_hand_edit_is_flagged(seem, qtbot, tmp_path):
    viewer, widget = seem
    image = _timelapse(viewer, widget, frames=2)
    _, shapes = widget.ensure_prompt_layers()
    shapes.add_rectangles(np.array([[0, 4, 4], [0, 4, 24], [0, 24, 24], [0, 24, 4]], float))
    widget.segment_plane(wait=True)
    labels = widget.labels_layer
    after_first = labels.data.copy()
    widget.set_object(0)
    shapes.add_rectangles(np.array([[0, 36, 36], [0, 36, 56], [0, 56, 56], [0, 56, 36]], float))
    widget.segment_plane(wait=True)  # a second object (boxes apart: it adds pixels), then undone
    assert (labels.data != after_first).any()
    viewer.layers.selection.active = labels
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(labels.data, after_first)

    labels.save(str(tmp_path / "a.tif"), plugin="napari-seem")
    log = provenance.load(tmp_path / "a.provenance.json")
    assert len(log.rounds) == 1 and not log.header["edited_after_last_round"]
    np.testing.assert_array_equal(napari_seem.replay(log, image).labels, tifffile.imread(tmp_path / "a.tif"))

    labels.data_setitem((np.array([1]), np.array([2]), np.array([2])), 9)  # a brush stroke
    labels.save(str(tmp_path / "b.tif"), plugin="napari-seem")
    assert provenance.load(tmp_path / "b.provenance.json").header["edited_after_last_round"]


def test_replay_on_another_image_of_the_wrong_shape_is_refused(seem, qtbot, tmp_path):
    import pytest

    viewer, widget = seem
    _timelapse(viewer, widget, frames=2)
    widget.text_edit.setText("nucleus")
    widget.segment_plane(wait=True)
    widget.labels_layer.save(str(tmp_path / "c.tif"), plugin="napari-seem")
    with pytest.raises(provenance.ProvenanceError, match="same shape"):
        napari_seem.replay(tmp_path / "c.provenance.json", np.zeros((2, 32, 32), np.float32))
