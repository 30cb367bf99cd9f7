"""The SEEM dock widget in a real napari viewer (headless under Xvfb), on the tests' tiny model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from seem_helpers import SLOW_TINY, TARGET_SIZE, TINY, blob_image
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from napari_seem.plugin.widget import KEYS, SeemWidget

WAIT_MS = 30_000


def _click_and_wait(qtbot, widget: SeemWidget, button) -> None:
    """Press a widget button as a user would and wait until the job's worker is done."""
    button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def _image(viewer, widget, data, **kwargs):
    layer = viewer.add_image(data, name="cells", **kwargs)
    widget.set_image_layer(layer)
    return layer


# ---------------------------------------------------------------------------------------- opening
def test_widget_is_in_the_plugins_menu_and_opens_from_it(make_napari_viewer, seem_manifest, qtbot):
    viewer = make_napari_viewer()
    # Two widgets (segmentation, fine-tuning): napari lists them in a "napari-seem" submenu.
    submenu = next(a.menu() for a in viewer.window.plugins_menu.actions() if a.text() == "napari-seem")
    action = next(a for a in submenu.actions() if a.text() == "SEEM segmentation")
    action.trigger()
    widget = viewer.window.dock_widgets["SEEM segmentation (napari-seem)"]
    assert isinstance(widget, SeemWidget)
    _, again = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    assert again is widget  # the menu and the Python call share one dock


def test_annotate_opens_and_configures_the_widget(make_napari_viewer, seem_manifest, tiny_models):
    import napari_seem

    viewer = make_napari_viewer()
    viewer.add_image(blob_image(), name="cells")
    widget = napari_seem.annotate(viewer, "cells", model=TINY, vocabulary=["nucleus", "cell"])
    assert isinstance(widget, SeemWidget) and widget.image_layer.name == "cells"
    assert widget.vocabulary_edit.text() == "nucleus, cell"
    assert napari_seem.annotate(viewer) is widget


def test_importing_the_plugin_does_not_import_torch():
    code = ("import sys, napari_seem, napari_seem.plugin.widget, napari_seem.plugin.controller; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_shortcuts_are_bound_and_clash_with_no_napari_default(seem):
    from napari.layers import Image, Labels, Points, Shapes
    from napari.utils.key_bindings import coerce_keybinding
    from napari.utils.shortcuts import default_shortcuts

    viewer, widget = seem
    defaults = {str(k) for keys in default_shortcuts.values() for k in keys}
    for layer_type in (Image, Labels, Points, Shapes):
        defaults |= {str(k) for k in layer_type.class_keymap}
    ours = {str(coerce_keybinding(k)) for k in KEYS.values()}
    assert not ours & defaults
    assert all(coerce_keybinding(k) in viewer.keymap for k in KEYS.values())
    viewer.keymap[coerce_keybinding(KEYS["negative"])](viewer)  # N
    assert widget.negative


def test_shift_s_on_the_canvas_segments_while_the_points_layer_is_active(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.add_layers_button.click()  # adds the prompt layers and activates the points layer
    points = widget.points_layer
    assert viewer.layers.selection.active == points  # == : the widget holds napari's proxy of it
    assert points.mode == "add", repr(points.mode)
    points.add([30, 40])
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_S, Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: widget.labels_layer is not None and (widget.labels_layer.data == 1).any(),
                    timeout=WAIT_MS)
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_N)
    assert widget.negative and points.feature_defaults["label"][0] == "negative"


# ---------------------------------------------------------------------------------------- clicks
def test_click_segments_a_new_object_keeps_user_labels_and_ctrl_z_reverts(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    user = np.zeros((64, 80), np.int32)
    user[:20, :20] = 5  # the user's own object under the model's likely mask
    labels = viewer.add_labels(user.copy(), name="my labels")
    widget.labels_combo.set_layer(labels)
    points, _ = widget.ensure_prompt_layers()
    points.add([30, 40])
    assert points.features["object"].tolist() == [0]  # "new" object

    _click_and_wait(qtbot, widget, widget.segment_button)

    assert not widget.last_error
    assert (labels.data == 6).any()  # a fresh id, above every id in use (random weights: any mask)
    assert (labels.data[:20, :20] == 5).all()  # keep mode: the user's labels untouched
    assert set(np.unique(labels.data)) <= {0, 5, 6}  # random weights may cover the whole rest
    assert widget.object_id == 6 and points.features["object"].tolist() == [6]
    row = labels.features.set_index("index").loc[6]
    assert row["source"] == "prompt" and 0 <= row["score"] <= 1

    viewer.layers.selection.active = labels
    QTest.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(labels.data, user)


def test_a_chosen_object_id_is_reused_and_refined(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.set_object(3)
    points, _ = widget.ensure_prompt_layers()
    points.add([30, 40])
    widget.segment_plane(wait=True)
    labels = widget.labels_layer
    assert set(np.unique(labels.data)) <= {0, 3} and (labels.data == 3).any()  # random weights: any mask
    assert points.features["object"].tolist() == [3]
    viewer.add_points(name="unrelated")  # adding a layer does not reset the memory of the rounds
    assert ((), 3) in widget.controller.memory

    widget.set_negative(True)
    points.add([5, 5])
    assert points.features["label"].tolist() == ["positive", "negative"]
    widget.segment_plane(wait=True)  # a second round for object 3, with the first as memory
    assert set(np.unique(labels.data)) <= {0, 3} and (labels.data == 3).any()
    assert (widget.controller.prompt_keys.keys()) == {((), 3)}


def test_rectangle_prompt_segments_inside_the_box(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    _, shapes = widget.ensure_prompt_layers()
    shapes.add_rectangles(np.array([[18, 28], [18, 52], [42, 52], [42, 28]], float))
    widget.segment_plane(wait=True)
    labels = widget.labels_layer.data
    ys, xs = np.nonzero(labels == 1)
    assert len(ys) > 0
    margin = 0.1 * 24 + 1  # the engine clips a box's mask to the box grown by 10 %
    assert ys.min() >= 18 - margin and ys.max() <= 42 + margin
    assert xs.min() >= 28 - margin and xs.max() <= 52 + margin


def test_text_prompt_segments_the_current_object(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.text_edit.setText("nucleus")
    widget.segment_plane(wait=True)
    labels = widget.labels_layer
    assert (labels.data == 1).any() and widget.object_id == 1
    assert labels.features.set_index("index").loc[1, "class_name"] == "nucleus"


# ---------------------------------------------------------------------------------------- everything
def test_segment_everything_writes_instances_with_class_names(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.vocabulary_edit.setText("nucleus, cell")
    widget.threshold_spin.setValue(0.0)
    _click_and_wait(qtbot, widget, widget.everything_button)
    labels = widget.labels_layer
    ids = set(np.unique(labels.data)) - {0}
    assert ids
    table = labels.features.set_index("index")
    assert set(table.index) == ids
    assert set(table["class_name"]) <= {"nucleus", "cell"} and (table["source"] == "everything").all()


def test_independent_planes_segment_everything_over_all_planes(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image((3, 48, 48), centre=(24, 24)))
    widget.role_combo.setCurrentIndex(2)  # independent 2D planes
    assert widget.all_planes_check.isEnabled() and not widget.propagate_button.isEnabled()
    widget.vocabulary_edit.setText("nucleus, cell")
    widget.threshold_spin.setValue(0.0)
    planes = []
    write = widget.controller.write_everything
    widget.controller.write_everything = lambda labels, item, mode: planes.append(item.plane) or write(
        labels, item, mode)
    widget.segment_everything(all_planes=True, wait=True)
    assert planes == [(0,), (1,), (2,)]
    labels = widget.labels_layer.data
    per_plane = [set(np.unique(labels[z])) - {0} for z in range(3)]
    assert all(per_plane)  # every plane got instances (these random weights find one per plane)
    assert not (per_plane[0] & per_plane[1]) and not (per_plane[1] & per_plane[2])  # ids are not shared


# ---------------------------------------------------------------------------------------- propagation
def _timelapse(viewer, widget, frames=6):
    from napari_seem.plugin.samples import nuclei_timelapse

    data, _, _ = nuclei_timelapse(frames=frames, size=64)[0]
    return _image(viewer, widget, data)


def _seed_frame(viewer, widget, frame: int) -> np.ndarray:
    """A hand-painted object (id 1) on ``frame``: what propagation carries."""
    viewer.dims.set_point(0, frame)
    labels = widget.ensure_labels_layer()
    mask = np.zeros(labels.data.shape[1:], bool)
    mask[20:40, 20:40] = True
    labels.data_setitem((np.full(mask.sum(), frame), *np.nonzero(mask)), 1)
    return labels.data


def test_timelapse_propagation_writes_every_frame_in_the_range(seem, qtbot):
    viewer, widget = seem
    _timelapse(viewer, widget)
    assert widget.propagate_button.isEnabled()
    labels = _seed_frame(viewer, widget, 1)
    written = []
    widget.frame_written.connect(written.append)
    widget.propagate("forward", frame_range=(1, 4), wait=True)
    assert written == [2, 3, 4]
    for t in (2, 3, 4):
        assert (labels[t] == 1).any(), f"frame {t} not written"
    assert not labels[0].any() and not labels[5].any()  # outside the range


def test_cancel_mid_propagation_keeps_finished_frames_and_nothing_later(seem, qtbot):
    from napari_seem.engine import SeemPredictor, VideoSession
    from napari_seem.model import build_with_weights
    from napari_seem.plugin.layer_prompts import labels_to_prompts
    from tiny import tiny_config

    viewer, widget = seem
    image = _timelapse(viewer, widget, frames=10)
    labels = _seed_frame(viewer, widget, 0)
    widget.set_model(SLOW_TINY)  # each frame's encode sleeps 0.25 s
    written = []
    widget.frame_written.connect(written.append)
    widget.frame_written.connect(lambda frame: widget.cancel_button.click() if frame == 2 else None)
    _click_and_wait(qtbot, widget, widget.propagate_button)

    assert written and written == list(range(1, len(written) + 1))  # a run of whole frames from the start
    assert 2 <= written[-1] < 9 and widget.status_label.text().startswith("cancelled")
    for t in range(written[-1] + 1, 10):
        assert not labels[t].any(), f"frame {t} written after cancel"
    model, _ = build_with_weights(tiny_config())  # the same weights: what each whole frame must be
    session = VideoSession(SeemPredictor(model, target_size=TARGET_SIZE), image.data, **widget.controller.lost_options)
    session.add_objects(0, labels_to_prompts(labels[0]))
    for frame in session.propagate("forward", stop=written[-1]):
        np.testing.assert_array_equal(labels[frame.frame], session.labels(frame.frame, np.int32))
    assert not widget.busy and widget.segment_button.isEnabled()


def test_propagation_along_z_of_a_time_lapse_volume(seem, qtbot):
    viewer, widget = seem
    _image(viewer, widget, blob_image((2, 4, 48, 48), centre=(24, 24)))  # (T, Z, Y, X)
    widget.role_combo.setCurrentIndex(1)  # z
    widget.axis_combo.setCurrentIndex(1)  # axis 1
    viewer.dims.set_point(0, 1)
    viewer.dims.set_point(1, 0)
    labels = widget.ensure_labels_layer()
    labels.data_setitem((np.full(100, 1), np.zeros(100, int), *np.nonzero(np.ones((10, 10)))), 1)
    widget.propagate("forward", wait=True)
    assert all((labels.data[1, z] == 1).any() for z in range(4))
    assert not labels.data[0].any()  # the other time point is untouched


# ---------------------------------------------------------------------------------------- channels
def test_multichannel_image_with_a_channel_choice(seem, qtbot):
    viewer, widget = seem
    data = np.stack([np.zeros((64, 80), np.float32), blob_image()])  # (C, Y, X)
    _image(viewer, widget, data)
    widget.channel_axis_combo.setCurrentIndex(1)  # axis 0 is the channel axis
    widget.channels_edit.setText("1")
    points, _ = widget.ensure_prompt_layers()
    points.add([0, 30, 40])
    widget.segment_plane(wait=True)
    labels = widget.labels_layer
    assert labels.data.shape == (64, 80) and (labels.data == 1).any()
    widget.channels_edit.setText("5")
    with pytest.raises(Exception, match="channels among 0..1"):
        widget.segment_plane(wait=True)


# ---------------------------------------------------------------------------------------- errors
def test_clear_errors_and_the_widget_stays_usable(seem, errors, qtbot):
    viewer, widget = seem
    widget.segment_plane()
    assert "no image" in errors[-1]
    _image(viewer, widget, blob_image())
    widget.segment_plane()
    assert "no prompts on this plane" in errors[-1]
    widget.propagate()
    assert "no axis to propagate" in errors[-1] or "2D image" in errors[-1]
    widget.segment_everything()
    assert "vocabulary" in errors[-1]
    assert all("Traceback" not in e for e in errors) and not widget.busy


def test_a_bad_checkpoint_shows_an_error_and_the_widget_stays_usable(seem, errors, qtbot, tmp_path):
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    points, _ = widget.ensure_prompt_layers()
    points.add([30, 40])
    widget.set_model("focalt_v1", checkpoint=str(tmp_path / "missing.pt"))
    _click_and_wait(qtbot, widget, widget.segment_button)
    assert "checkpoint file not found" in errors[-1]

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    widget.set_model("focalt_v1", checkpoint=str(bad))
    _click_and_wait(qtbot, widget, widget.segment_button)
    assert "not a readable PyTorch checkpoint" in errors[-1] and "Traceback" not in errors[-1]
    assert "error" in widget.status_label.text() and widget.segment_button.isEnabled()
    assert widget.labels_layer is None or not widget.labels_layer.data.any()

    widget.set_model(TINY)
    widget.segment_plane(wait=True)
    assert (widget.labels_layer.data == 1).any()


def test_an_unavailable_device_is_refused_clearly(seem, errors, qtbot):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.set_model(TINY, device="cuda")
    widget.text_edit.setText("cell")
    _click_and_wait(qtbot, widget, widget.segment_button)
    assert "CUDA is not available" in errors[-1]


def test_an_official_checkpoint_that_cannot_be_downloaded_says_where_to_put_it(seem, errors, qtbot, monkeypatch):
    from napari_seem.io import checkpoints

    def offline(name, **kwargs):
        raise checkpoints.CheckpointUnavailable(f"could not download {name}.pt; put it at /cache/{name}.pt")

    monkeypatch.setattr(checkpoints, "fetch_checkpoint", offline)
    viewer, widget = seem
    _image(viewer, widget, blob_image())
    widget.set_model("seem_focalt_v1 (official, downloaded once)")
    assert not widget.checkpoint_edit.isEnabled()
    widget.text_edit.setText("cell")
    _click_and_wait(qtbot, widget, widget.segment_button)
    assert errors[-1] == "SEEM: could not download seem_focalt_v1.pt; put it at /cache/seem_focalt_v1.pt"
