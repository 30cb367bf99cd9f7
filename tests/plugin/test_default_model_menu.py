"""The embedded default model in the segmentation widget's model menu: first, stated, and a clear
message (no traceback) when its file is missing."""

from __future__ import annotations

import numpy as np
import pytest
from seem_helpers import blob_image
from toy_checkpoint import save_toy_checkpoint

from napari_seem import loading
from napari_seem.plugin import models
from napari_seem.plugin.controller import SeemController


@pytest.fixture
def warnings(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr("napari_seem.plugin.widget.show_warning", shown.append)
    return shown


@pytest.fixture
def no_default(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.DEFAULT_ENV, str(tmp_path / "absent" / "default_tiny.pt"))


def test_the_embedded_default_is_the_first_and_default_choice():
    assert list(models.available_models())[0] == models.EMBEDDED_DEFAULT
    assert SeemController().model_choice[0] == models.EMBEDDED_DEFAULT


def test_the_embedded_default_loads_with_a_statement_of_its_training(tmp_path, monkeypatch):
    monkeypatch.setenv(loading.DEFAULT_ENV, str(save_toy_checkpoint(tmp_path / "default_tiny.pt")))
    loaded = models.load_model(models.EMBEDDED_DEFAULT, device="cpu")
    assert not loaded.model.training and loaded.target_size == 512
    assert loaded.weights.startswith("embedded default: napari-seem default_tiny, trained 7 steps on toy_cells")


def test_a_missing_default_is_refused_before_anything_is_built(no_default):
    with pytest.raises(models.ModelError, match="embedded default model .* is not installed"):
        models.load_model(models.EMBEDDED_DEFAULT, device="cpu")


def test_choosing_a_missing_default_in_the_widget_says_so(make_napari_viewer, seem_manifest, tiny_models,
                                                          errors, warnings, no_default, qtbot):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    assert widget.model_combo.currentText() == models.EMBEDDED_DEFAULT
    assert widget.weights_label.text().startswith("not available: the embedded default model")
    widget.set_model(tiny_models)
    widget.model_combo.setCurrentText(models.EMBEDDED_DEFAULT)  # as a user picks it
    assert len(warnings) == 1 and "is not installed" in warnings[0]

    viewer.add_image(blob_image(), name="cells")
    widget.text_edit.setText("cell")
    widget.segment_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert "is not installed" in errors[-1] and "Traceback" not in errors[-1]
    assert widget.labels_layer is None or not np.asarray(widget.labels_layer.data).any()

    widget.set_model(tiny_models)  # the widget stays usable
    widget.segment_plane(wait=True)
    assert widget.labels_layer.data.any()


def test_the_embedded_default_segments_everything_by_a_point_grid(make_napari_viewer, seem_manifest, errors, qtbot):
    """Its object queries are weak, so the widget switches "find by" to the point grid for it and
    finds the nuclei of the bundled held-out image; official models get their object queries."""
    from skimage import io

    from napari_seem.cli.demo import SAMPLE_IMAGE

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    widget.set_model("focalt_v1")
    assert widget.everything_combo.currentText() == "object queries"
    widget.set_model(models.EMBEDDED_DEFAULT)
    assert widget.everything_combo.currentText() == "point grid"
    viewer.add_image(io.imread(SAMPLE_IMAGE), name="nuclei")
    widget.vocabulary_edit.setText("nucleus")
    widget.segment_everything(wait=True)
    assert not errors
    found = set(np.unique(widget.labels_layer.data)) - {0}
    assert len(found) >= 10
    assert set(widget.labels_layer.features["class_name"]) == {"nucleus"}


def test_kept_fine_tuned_models_follow_the_built_in_entries(tmp_path, monkeypatch, tiny_models):
    from napari_seem import user_models

    monkeypatch.setenv(user_models.MODELS_ENV, str(tmp_path / "my-models"))
    built_in = list(models.available_models())
    user_models.add_user_model(save_toy_checkpoint(tmp_path / "nuclei.pt"))
    menu = list(models.available_models())
    assert menu[0] == models.EMBEDDED_DEFAULT
    assert menu.index("fine-tuned: nuclei") == built_in.index(tiny_models)  # before this session's own entries
    assert [n for n in menu if n != "fine-tuned: nuclei"] == built_in
    assert "trained 7 steps on toy_cells" in models.get_source("fine-tuned: nuclei").description
