"""What the segmentation widget tells the user: planes named as frames, slices or "plane i of n", no
object called "background", and a plain message for an image without finite values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from seem_helpers import blob_image


def _record_status(widget, monkeypatch) -> list[str]:
    """Every text the status line shows from now on (the last one alone hides the planes before)."""
    seen: list[str] = []
    set_text = widget.status_label.setText
    monkeypatch.setattr(widget.status_label, "setText", lambda text: (seen.append(text), set_text(text)))
    return seen


def _image(viewer, widget, data):
    layer = viewer.add_image(data, name="cells")
    widget.set_image_layer(layer)
    return layer


def test_segment_everything_names_independent_planes_i_of_n(seem, qtbot, monkeypatch):
    viewer, widget = seem
    _image(viewer, widget, blob_image((3, 48, 48), centre=(24, 24)))
    widget.role_combo.setCurrentIndex(2)  # independent 2D planes
    widget.vocabulary_edit.setText("nucleus, cell")
    widget.threshold_spin.setValue(0.0)
    seen = _record_status(widget, monkeypatch)
    widget.segment_everything(all_planes=True, wait=True)
    planes = [t.split(":")[0] for t in seen if "found" in t]
    assert planes == ["plane 0 of 3", "plane 1 of 3", "plane 2 of 3"], seen


def test_a_2d_image_names_no_plane(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.vocabulary_edit.setText("nucleus")
    widget.threshold_spin.setValue(0.0)
    widget.segment_everything(wait=True)
    text = widget.status_label.text()
    assert "found" in text and not text.startswith("plane") and "(" not in text, text


def test_propagation_through_z_names_slices(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image((4, 48, 48), centre=(24, 24)))
    widget.role_combo.setCurrentIndex(1)  # z
    viewer.dims.set_point(0, 0)
    labels = widget.ensure_labels_layer()
    labels.data_setitem((np.zeros(100, int), *np.nonzero(np.ones((10, 10)))), 1)
    widget.propagate("forward", wait=True)
    assert widget.status_label.text().startswith("slice 3: 1 object (3/3)"), widget.status_label.text()


def test_a_click_on_a_time_lapse_names_the_frame(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image((3, 64, 80)))
    viewer.dims.set_point(0, 2)
    widget.text_edit.setText("nucleus")
    widget.segment_plane(wait=True)
    assert widget.status_label.text().startswith("frame 2: object 1"), widget.status_label.text()


def test_an_object_the_background_class_wins_is_not_named_background(seem, qtbot, monkeypatch):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.vocabulary_edit.setText("nucleus, cell")
    run_plane = widget.controller.run_plane

    def background_wins(job):  # what the engine answers when no vocabulary class beats background
        return {o: dataclasses.replace(r, class_name="background", class_score=0.9)
                for o, r in run_plane(job).items()}

    monkeypatch.setattr(widget.controller, "run_plane", background_wins)
    points, _ = widget.ensure_prompt_layers()
    points.add([30, 40])
    widget.segment_plane(wait=True)
    row = widget.labels_layer.features.set_index("index").loc[1]
    assert row["class_name"] == "" and pd.isna(row["class_score"])
    assert "background" not in widget.status_label.text() and "object 1:" in widget.status_label.text()

    widget.text_edit.setText("nucleus")  # the user's own word for the object is kept
    widget.segment_plane(wait=True)
    assert widget.labels_layer.features.set_index("index").loc[1, "class_name"] == "nucleus"


def test_an_all_nan_image_says_it_has_no_finite_values_and_writes_nothing(seem, errors, qtbot, monkeypatch):
    warnings = []
    monkeypatch.setattr("napari_seem.plugin.widget.show_warning", warnings.append)
    viewer, widget = seem
    _image(viewer, widget, np.full((64, 80), np.nan, np.float32))
    points, _ = widget.ensure_prompt_layers()
    points.add([30, 40])
    widget.segment_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "no finite values" in errors[-1] and "Traceback" not in errors[-1]
    assert not any("came back empty" in w for w in warnings)
    assert not widget.labels_layer.data.any()
    widget.vocabulary_edit.setText("nucleus")
    widget.segment_everything()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "no finite values" in errors[-1] and not widget.labels_layer.data.any()
