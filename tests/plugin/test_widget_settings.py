"""The segmentation widget's model settings: how many CPU threads a job runs on, and a "find by"
choice that survives a new model (also one the fine-tuning widget hands over)."""

from __future__ import annotations

import pytest
from seem_helpers import blob_image, tiny_loader

from napari_seem.plugin import models
from napari_seem.plugin.threads import available_cpus, default_threads


def test_the_default_leaves_cores_for_napari_and_other_programs():
    assert [default_threads(n) for n in (1, 2, 3, 4, 8, 64)] == [1, 1, 1, 2, 4, 8]


def test_a_job_runs_on_the_threads_set_in_the_widget(seem, qtbot, monkeypatch):
    import torch

    if available_cpus() < 2:
        pytest.skip("one core: nothing to choose")
    viewer, widget = seem
    assert (widget.threads_spin.minimum(), widget.threads_spin.maximum()) == (1, available_cpus())
    assert widget.threads == default_threads()
    widget.set_image_layer(viewer.add_image(blob_image(), name="cells"))
    widget.text_edit.setText("cell")
    seen = []
    run_plane = widget.controller.run_plane

    def recording(job):  # runs in the worker thread, where the model runs
        seen.append(torch.get_num_threads())
        return run_plane(job)

    monkeypatch.setattr(widget.controller, "run_plane", recording)
    for threads in (2, 1):
        widget.threads_spin.setValue(threads)  # as a user sets it
        widget.segment_plane(wait=True)
    assert seen == [2, 1]


@pytest.fixture
def fine_tuned(tiny_models):
    """A model as the fine-tuning widget registers it (its name says it was fine-tuned)."""
    name = "fine-tuned: nuclei"
    models.register_model(models.ModelSource(name, tiny_loader()), replace=True)
    yield name
    models.unregister_model(name)


def test_a_fine_tuned_model_keeps_the_point_grid(make_napari_viewer, seem_manifest, fine_tuned):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    assert widget.model_combo.currentText() == models.EMBEDDED_DEFAULT
    assert widget.everything_combo.currentText() == "point grid"
    widget.refresh_models(select=fine_tuned)  # what the fine-tuning widget does when it is done
    assert widget.model_combo.currentText() == fine_tuned
    assert widget.everything_combo.currentText() == "point grid"


def test_the_users_find_by_choice_survives_a_new_model(make_napari_viewer, seem_manifest, fine_tuned):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    widget.set_model("focalt_v1")
    assert widget.everything_combo.currentText() == "object queries"  # an official model's default
    widget.everything_combo.setCurrentText("point grid")  # the user's choice
    widget.set_model("focalt_v0")
    assert widget.everything_combo.currentText() == "point grid"
    widget.everything_combo.setCurrentText("object queries")
    widget.refresh_models(select=fine_tuned)
    assert widget.everything_combo.currentText() == "object queries"
