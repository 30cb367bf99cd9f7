"""The user models folder: fine-tuned checkpoints kept across sessions, listed in the model menu,
loaded from it, and removed on request; names never collide and nothing is overwritten."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from toy_checkpoint import save_toy_checkpoint, save_toy_official

from napari_seem import user_models
from napari_seem.plugin import models


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(user_models.MODELS_ENV, str(tmp_path / "my-models"))
    return tmp_path / "my-models"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_toy_checkpoint(tmp_path_factory.mktemp("runs") / "tuned.pt",
                               training={"model": "default_tiny", "init_checkpoint": "/somewhere/default_tiny.pt"})


def test_the_folder_is_under_the_cache_unless_the_environment_says_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SEEM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(user_models.MODELS_ENV, raising=False)
    assert user_models.models_dir() == tmp_path / "cache" / "models"
    monkeypatch.setenv(user_models.MODELS_ENV, str(tmp_path / "elsewhere"))
    assert user_models.models_dir() == tmp_path / "elsewhere"
    assert user_models.list_user_models() == []  # no folder yet: nothing, no error


def test_a_kept_model_is_listed_with_its_record_and_loads_from_the_menu(folder, checkpoint):
    kept = user_models.add_user_model(checkpoint)
    assert kept.name == "tuned" and kept.path == folder / "tuned.pt" and checkpoint.is_file()  # a copy
    assert kept.label == "fine-tuned: tuned" and kept.model == "default_tiny" and kept.steps == 7
    assert kept.started_from == "default_tiny.pt" and kept.origin == str(checkpoint)
    assert kept.created == user_models.find_user_model("tuned").read_record()["created"]
    assert "trained 7 steps on toy_cells" in kept.weights

    menu = list(models.available_models())
    assert menu.index("fine-tuned: tuned") > menu.index("seem_focall_v0 (official, downloaded once)")
    assert "fine-tuned: tuned" not in models._REGISTRY  # listed from the folder, not registered
    loaded = models.load_model("fine-tuned: tuned", device="cpu")
    assert not loaded.model.training and "trained 7 steps on toy_cells" in loaded.weights
    assert str(kept.path) in loaded.weights


def test_a_new_session_lists_the_kept_model(folder, checkpoint):
    user_models.add_user_model(checkpoint, "nuclei v2")
    code = "from napari_seem.plugin import models; print('\\n'.join(models.available_models()))"
    menu = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={**os.environ}).stdout.splitlines()
    assert menu[0] == models.EMBEDDED_DEFAULT and menu[-1] == "fine-tuned: nuclei_v2"


def test_names_that_collide_keep_both_and_nothing_is_overwritten(folder, checkpoint, tmp_path):
    first = user_models.add_user_model(checkpoint)
    other = save_toy_checkpoint(tmp_path / "other" / "tuned.pt", seed=9)
    second = user_models.add_user_model(other)
    third = user_models.add_user_model(checkpoint, "tuned.pt")
    assert [first.name, second.name, third.name] == ["tuned", "tuned-2", "tuned-3"]
    assert first.path.read_bytes() == checkpoint.read_bytes() and second.path.read_bytes() == other.read_bytes()
    assert [m.name for m in user_models.list_user_models()] == ["tuned", "tuned-2", "tuned-3"]
    assert {"fine-tuned: tuned", "fine-tuned: tuned-2", "fine-tuned: tuned-3"} <= set(models.available_models())


def test_names_are_made_safe_for_the_file_system(folder, checkpoint):
    kept = user_models.add_user_model(checkpoint, "../my cells: run/1")
    assert kept.path.parent == folder and kept.name == "my_cells__run_1"


def test_removing_deletes_the_kept_copy_only(folder, checkpoint):
    user_models.add_user_model(checkpoint)
    kept = user_models.add_user_model(checkpoint)
    removed = models.remove_user_model("fine-tuned: tuned")
    assert removed == folder / "tuned.pt" and not removed.exists() and not (folder / "tuned.json").exists()
    assert checkpoint.is_file() and kept.path.is_file()  # the original and the other model stay
    assert "fine-tuned: tuned" not in models.available_models()
    assert [m.name for m in user_models.list_user_models()] == ["tuned-2"]
    with pytest.raises(models.ModelError, match="no fine-tuned model called 'tuned'"):
        models.remove_user_model("tuned")


def test_a_moved_checkpoint_leaves_its_old_place(folder, tmp_path):
    staged = save_toy_checkpoint(tmp_path / "run" / "cells-20260102-030405.pt")
    kept = user_models.add_user_model(staged, move=True)
    assert kept.path == folder / "cells-20260102-030405.pt" and not staged.exists()


def test_a_checkpoint_written_into_the_folder_is_kept_where_it_is(folder):
    written = save_toy_checkpoint(folder / "straight in.pt")
    kept = user_models.add_user_model(written)
    assert kept.path == written and kept.steps == 7
    assert [m.name for m in user_models.list_user_models()] == ["straight in"]


def test_only_napari_seem_checkpoints_are_kept(folder, tmp_path):
    with pytest.raises(user_models.UserModelError, match="not a napari-seem training checkpoint"):
        user_models.add_user_model(save_toy_official(tmp_path / "seem_focalt_v1.pt"))
    with pytest.raises(user_models.UserModelError, match="checkpoint not found"):
        user_models.add_user_model(tmp_path / "absent.pt")
    assert not folder.exists() or not any(folder.iterdir())


def test_files_put_there_by_hand_are_listed_and_the_rest_ignored(folder, checkpoint):
    folder.mkdir()
    (folder / "by hand.pt").write_bytes(checkpoint.read_bytes())
    (folder / "train_state.pt").write_bytes(b"a run's state, not a model")
    (folder / ".hidden.pt").write_bytes(b"")
    (folder / user_models.STAGING / "run").mkdir(parents=True)
    (folder / user_models.STAGING / "run" / "run.pt").write_bytes(b"in progress")
    kept = user_models.add_user_model(checkpoint)
    (folder / "tuned.json").write_text("{not json")  # a damaged record: listed all the same
    listed = {m.name: m for m in user_models.list_user_models()}
    assert sorted(listed) == ["by hand", "tuned"]
    assert listed["tuned"].path == kept.path and listed["tuned"].weights == "" and listed["by hand"].created
    assert models.load_model("fine-tuned: by hand", device="cpu").model is not None
    assert json.loads(json.dumps(listed["by hand"].describe()))  # a plain line for the tooltip
