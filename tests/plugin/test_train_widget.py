"""The SEEM fine-tuning dock widget in a real napari viewer (headless), training the toy model for
a few steps at a small image size. Its results are kept in the user models folder (a test folder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt
from toy_checkpoint import save_toy_checkpoint, save_toy_official

from napari_seem import loading, user_models
from napari_seem.plugin import models
from napari_seem.plugin.train_widget import SeemTrainWidget
from napari_seem.plugin.widget import SeemWidget
from napari_seem.training import load_trained, read_record

WAIT_MS = 60_000


def _cells(n_planes: int = 3, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A (Z, Y, X) stack of bright discs and its labels; the middle plane is left unlabelled."""
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (n_planes, size, size)).astype(np.float32)
    labels = np.zeros((n_planes, size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    for z in range(n_planes):
        for object_id, (cy, cx) in enumerate([(16, 16), (40, 44), (20, 48)], start=1):
            disc = (yy - cy - z) ** 2 + (xx - cx) ** 2 <= 49
            image[z][disc] += 400
            if z != n_planes // 2:
                labels[z][disc] = object_id
    return image, labels


@pytest.fixture
def trainer(make_napari_viewer, seem_manifest, errors, monkeypatch, tmp_path):
    """``(viewer, segmentation widget, fine-tuning widget)``, both opened from the plugin's manifest,
    with cells + labels layers and the toy checkpoint as the embedded default."""
    monkeypatch.setenv(loading.DEFAULT_ENV, str(save_toy_checkpoint(tmp_path / "default_tiny.pt")))
    monkeypatch.setenv(user_models.MODELS_ENV, str(tmp_path / "my-models"))
    monkeypatch.setattr("napari_seem.plugin.train_widget.show_error", errors.append)
    viewer = make_napari_viewer()
    image, labels = _cells()
    viewer.add_image(image, name="cells")
    viewer.add_labels(labels, name="annotations")
    _, segmentation = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM fine-tuning")
    widget.size_spin.setValue(64)
    widget.batch_spin.setValue(1)
    widget.class_edit.setText("nucleus")
    yield viewer, segmentation, widget
    for name in [n for n in models.available_models() if n.startswith("fine-tuned:")]:
        models.unregister_model(name)


def test_training_from_a_checkpoint_reaches_the_end_and_the_model_is_used_at_once(trainer, tmp_path, qtbot):
    viewer, segmentation, widget = trainer
    assert isinstance(widget, SeemTrainWidget) and isinstance(segmentation, SeemWidget)
    assert widget.image_combo.layer().name == "cells" and widget.labels_combo.layer().name == "annotations"
    start = save_toy_checkpoint(tmp_path / "start.pt", seed=11)
    widget.set_start("checkpoint", start)
    widget.steps_spin.setValue(3)
    widget.output_edit.setText(str(tmp_path / "tuned.pt"))
    steps_seen = []
    widget.progressed.connect(lambda p: steps_seen.append(p.step))
    widget.train(wait=True)

    assert steps_seen == [1, 2, 3] and widget.progress_bar.value() == widget.progress_bar.maximum() == 3
    path = tmp_path / "tuned.pt"
    record = read_record(path)
    assert record["metrics"]["steps"] == 3 and record["metrics"]["stop_reason"] == "finished"
    assert record["data"]["datasets"][0]["names"] == ["cells[0]", "cells[2]"]  # plane 1 has no labels
    assert record["data"]["datasets"][0]["vocabulary"] == ["nucleus"]
    assert record["training"]["init_checkpoint"] == str(start)
    assert not torch.equal(load_trained(path).state_dict()["backbone.patch_embed.proj.weight"],
                           load_trained(start).state_dict()["backbone.patch_embed.proj.weight"])

    # The result is kept in the user models folder (a copy: the chosen file stays).
    kept = user_models.find_user_model("tuned")
    assert kept.path == tmp_path / "my-models" / "tuned.pt" and path.is_file()
    assert kept.steps == 3 and kept.started_from == "start.pt" and kept.origin == str(path)
    assert widget.user_models_combo.currentText() == "tuned"

    # The segmentation widget offers the new model, chose it and is loading it.
    assert segmentation.model_combo.currentText() == "fine-tuned: tuned"
    qtbot.waitUntil(lambda: not segmentation.busy, timeout=WAIT_MS)
    assert segmentation.controller.model_ready
    assert "trained 3 steps on in-memory images (nucleus, 2 images)" in segmentation.weights_label.text()
    loaded = segmentation.controller.loaded.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in load_trained(path).state_dict().items())


def test_stop_mid_way_saves_the_model_so_far(trainer, tmp_path, qtbot):
    viewer, segmentation, widget = trainer
    assert widget.start == "default"  # the embedded default is the starting point unless chosen otherwise
    widget.steps_spin.setValue(500)
    widget.output_edit.setText(str(tmp_path / "stopped.pt"))
    widget.progressed.connect(lambda p: widget.stop_button.click() if p.step == 2 else None)
    outcomes = []
    widget.training_finished.connect(outcomes.append)
    widget.train_button.click()
    assert widget.busy and widget.stop_button.isEnabled() and not widget.train_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)

    metrics = read_record(tmp_path / "stopped.pt")["metrics"]
    assert outcomes == ["stopped"] and 2 <= metrics["steps"] < 500
    assert metrics["stop_reason"] == "stopped by callback" and not load_trained(tmp_path / "stopped.pt").training
    assert read_record(tmp_path / "stopped.pt")["training"]["init_checkpoint"] == str(loading.default_checkpoint())
    assert "fine-tuned: stopped" in models.available_models() and widget.train_button.isEnabled()
    qtbot.waitUntil(lambda: not segmentation.busy, timeout=WAIT_MS)  # it loads the new model
    assert segmentation.controller.model_ready
    assert f"trained {metrics['steps']} steps (stopped by callback)" in segmentation.weights_label.text()


def test_bad_settings_are_clear_messages_and_nothing_is_overwritten(trainer, errors, tmp_path, qtbot):
    viewer, segmentation, widget = trainer
    taken = tmp_path / "taken.pt"
    taken.write_bytes(b"keep me")
    widget.output_edit.setText(str(taken))
    widget.train()
    assert "exists already" in errors[-1] and taken.read_bytes() == b"keep me"

    widget.output_edit.setText(str(tmp_path / "new.pt"))
    viewer.layers["annotations"].data = np.zeros_like(viewer.layers["annotations"].data)
    widget.train()
    assert "nothing to train on" in errors[-1]

    viewer.layers["annotations"].data = _cells()[1]
    widget.set_start("checkpoint", save_toy_official(tmp_path / "official.pt"))
    widget.steps_spin.setValue(2)
    widget.train_button.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert "official SEEM checkpoint: choose its model" in errors[-1]
    assert all("Traceback" not in e for e in errors) and not (tmp_path / "new.pt").exists()


def test_folders_of_tiffs_are_the_other_data_source(trainer, errors, tmp_path):
    import tifffile

    viewer, segmentation, widget = trainer
    image, labels = _cells()
    for folder in ("imgs", "masks"):
        (tmp_path / folder).mkdir()
    tifffile.imwrite(tmp_path / "imgs" / "stack.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "masks" / "stack.tif", labels.astype(np.uint16), photometric="minisblack")
    widget.source_combo.setCurrentIndex(1)
    assert widget.images_dir_edit.isEnabled() and not widget.image_combo.isEnabled()
    widget.images_dir_edit.setText(str(tmp_path / "imgs"))
    widget.labels_dir_edit.setText(str(tmp_path / "masks"))
    found = widget.training_pairs()
    assert found.names == ["stack[0]", "stack[2]"] and found.skipped == ["stack[1]"]
    widget.labels_dir_edit.setText(str(tmp_path / "nowhere"))
    widget.train()
    assert "labels folder not found" in errors[-1] and not widget.busy


def test_without_an_output_file_the_model_is_kept_only_in_your_models(trainer, tmp_path, qtbot):
    viewer, segmentation, widget = trainer
    assert widget.output_edit.text() == "" and widget.user_models_combo.count() == 0
    widget.steps_spin.setValue(2)
    widget.train(wait=True)

    [kept] = user_models.list_user_models()
    assert kept.path.parent == tmp_path / "my-models" and kept.name.startswith("cells-") and kept.steps == 2
    assert widget.last_checkpoint == kept.path and read_record(kept.path)["metrics"]["steps"] == 2
    staging = tmp_path / "my-models" / user_models.STAGING
    assert not staging.exists() or not any(staging.iterdir())  # the run's folder (and its state) is gone
    assert sorted(p.name for p in (tmp_path / "my-models").iterdir() if p.name != user_models.STAGING) == \
        [f"{kept.name}.json", f"{kept.name}.pt"]
    assert widget.user_models_combo.currentText() == kept.name
    assert segmentation.model_combo.currentText() == kept.label
    qtbot.waitUntil(lambda: not segmentation.busy, timeout=WAIT_MS)
    assert segmentation.controller.model_ready


def test_a_kept_model_is_in_the_menu_of_a_new_session_and_loads(trainer, make_napari_viewer, tmp_path, qtbot):
    viewer, segmentation, widget = trainer
    widget.steps_spin.setValue(2)
    widget.output_edit.setText(str(tmp_path / "mine.pt"))
    widget.train(wait=True)
    qtbot.waitUntil(lambda: not segmentation.busy, timeout=WAIT_MS)
    viewer.close()
    for name in [n for n in models._REGISTRY if n.startswith("fine-tuned:")]:  # nothing of that session is left
        models.unregister_model(name)

    again = make_napari_viewer()
    _, fresh = again.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    _, trainer_again = again.window.add_plugin_dock_widget("napari-seem", "SEEM fine-tuning")
    menu = [fresh.model_combo.itemText(i) for i in range(fresh.model_combo.count())]
    assert menu[0] == models.EMBEDDED_DEFAULT and menu[-1] == "fine-tuned: mine"
    assert "trained 2 steps" in fresh.model_combo.itemData(len(menu) - 1, Qt.ItemDataRole.ToolTipRole)
    assert [trainer_again.user_models_combo.itemText(i) for i in range(trainer_again.user_models_combo.count())] \
        == ["mine"]
    fresh.set_model("fine-tuned: mine")
    fresh.load_model(wait=True)
    assert fresh.controller.model_ready and "trained 2 steps" in fresh.weights_label.text()
    loaded = fresh.controller.loaded.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in load_trained(tmp_path / "mine.pt").state_dict().items())


def test_removing_a_kept_model_asks_then_deletes_it_everywhere(trainer, tmp_path, monkeypatch, qtbot):
    viewer, segmentation, widget = trainer
    answers = [False, True]
    asked = []
    monkeypatch.setattr("napari_seem.plugin.train_widget.confirm",
                        lambda parent, title, question: asked.append(question) or answers.pop(0))
    first = widget.add_user_model(save_toy_checkpoint(tmp_path / "a" / "nuclei.pt"))
    second = widget.add_user_model(save_toy_checkpoint(tmp_path / "b" / "nuclei.pt", seed=8))
    assert (first.name, second.name) == ("nuclei", "nuclei-2")  # the same name twice: both kept
    assert {"fine-tuned: nuclei", "fine-tuned: nuclei-2"} <= {segmentation.model_combo.itemText(i)
                                                             for i in range(segmentation.model_combo.count())}
    segmentation.set_model("fine-tuned: nuclei")
    segmentation.load_model(wait=True)
    widget.user_models_combo.setCurrentText("nuclei")

    widget.remove_model_button.click()  # answered No: nothing happens
    assert len(asked) == 1 and "nuclei" in asked[0] and first.path.is_file()
    widget.remove_model_button.click()  # Yes
    assert not first.path.exists() and not first.record_path.exists() and second.path.is_file()
    assert (tmp_path / "a" / "nuclei.pt").is_file()  # the file it was kept from stays
    assert [widget.user_models_combo.itemText(i) for i in range(widget.user_models_combo.count())] == ["nuclei-2"]
    menu = [segmentation.model_combo.itemText(i) for i in range(segmentation.model_combo.count())]
    assert "fine-tuned: nuclei" not in menu and "fine-tuned: nuclei-2" in menu
    assert segmentation.model_combo.currentText() == models.EMBEDDED_DEFAULT  # it was in use: back to the default
    assert segmentation.controller.model_choice[0] == models.EMBEDDED_DEFAULT

    widget.remove_user_model("nuclei-2", ask=False)
    assert widget.user_models_combo.count() == 0 and not widget.remove_model_button.isEnabled()
    assert user_models.list_user_models() == []


def test_adding_a_file_that_is_not_a_napari_seem_checkpoint_is_a_message(trainer, errors, tmp_path):
    viewer, segmentation, widget = trainer
    assert widget.add_user_model(save_toy_official(tmp_path / "official.pt")) is None
    assert "not a napari-seem training checkpoint" in errors[-1] and user_models.list_user_models() == []
