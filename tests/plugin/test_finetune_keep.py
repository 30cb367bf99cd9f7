"""Keeping a fine-tuning run's result in the user models folder (no Qt, no training: the run itself
is replaced by one that writes the toy checkpoint)."""

from __future__ import annotations

import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from toy_checkpoint import save_toy_checkpoint, save_toy_official

from napari_seem import user_models
from napari_seem.plugin import finetune
from napari_seem.plugin.finetune import FinetuneSettings, is_staged, staged_output, train_and_keep

NOW = datetime.datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(user_models.MODELS_ENV, str(tmp_path / "my-models"))
    return tmp_path / "my-models"


def _run(monkeypatch, write=save_toy_checkpoint, fail: bool = False):
    def run_training(config, settings):
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)  # as the training loop does
        path = write(Path(config.out_dir) / config.checkpoint_name)
        (Path(config.out_dir) / "train_state.pt").write_bytes(b"optimiser state")
        if fail:
            raise FloatingPointError("step 2: the loss is nan")
        return path

    monkeypatch.setattr(finetune, "run_training", run_training)


def _config(output: Path):
    return SimpleNamespace(out_dir=output.parent, checkpoint_name=output.name)


def test_a_run_without_an_output_file_trains_in_its_own_folder_and_is_moved_in(folder, monkeypatch):
    output = staged_output("my cells", NOW)
    assert output == folder / user_models.STAGING / "my_cells-20260102-030405" / "my_cells-20260102-030405.pt"
    assert is_staged(output) and not is_staged(folder / "x.pt")
    output.parent.mkdir(parents=True)
    assert staged_output("my cells", NOW).parent.name == "my_cells-20260102-030405-2"  # a fresh folder
    output.parent.rmdir()

    _run(monkeypatch)
    result = train_and_keep(_config(output), FinetuneSettings(output=output))
    assert result.kept.name == "my_cells-20260102-030405" and result.checkpoint == result.kept.path
    assert result.kept.path.parent == folder and result.keep_error is None
    assert not output.parent.exists()  # the run folder, with the run's state, is gone
    assert [m.name for m in user_models.list_user_models()] == ["my_cells-20260102-030405"]


def test_a_failed_run_leaves_nothing_behind(folder, monkeypatch):
    output = staged_output("cells", NOW)
    _run(monkeypatch, fail=True)
    with pytest.raises(FloatingPointError):
        train_and_keep(_config(output), FinetuneSettings(output=output))
    assert not output.parent.exists() and user_models.list_user_models() == []


def test_a_chosen_output_file_stays_and_a_copy_is_kept(folder, monkeypatch, tmp_path):
    _run(monkeypatch)
    output = tmp_path / "runs" / "tuned.pt"
    result = train_and_keep(_config(output), FinetuneSettings(output=output, name="nuclei"))
    assert result.checkpoint == output and output.is_file()
    assert result.kept.path == folder / "nuclei.pt" and result.kept.origin == str(output)

    not_kept = train_and_keep(_config(tmp_path / "runs" / "other.pt"),
                              FinetuneSettings(output=tmp_path / "runs" / "other.pt", keep=False))
    assert not_kept.kept is None and not_kept.keep_error is None
    assert [m.name for m in user_models.list_user_models()] == ["nuclei"]


def test_failing_to_keep_is_not_failing_to_train(folder, monkeypatch, tmp_path):
    _run(monkeypatch, write=save_toy_official)
    output = tmp_path / "runs" / "tuned.pt"
    result = train_and_keep(_config(output), FinetuneSettings(output=output))
    assert result.checkpoint == output and result.kept is None
    assert "not a napari-seem training checkpoint" in result.keep_error
