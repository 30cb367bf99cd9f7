"""``napari_seem.load_model`` and the embedded default model (a toy checkpoint stands in for the
shipped file, through ``$NAPARI_SEEM_DEFAULT_MODEL``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from toy_checkpoint import save_toy_checkpoint, save_toy_official

import napari_seem
from napari_seem import loading
from napari_seem.model import CheckpointError


@pytest.fixture
def toy_default(tmp_path, monkeypatch):
    path = save_toy_checkpoint(tmp_path / "default_tiny.pt")
    monkeypatch.setenv(loading.DEFAULT_ENV, str(path))
    return path


def _same_weights(model, path) -> bool:
    saved = torch.load(path, weights_only=True)
    saved = saved.get("state_dict", saved)
    return set(saved) == set(model.state_dict()) and all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_importing_napari_seem_does_not_import_torch():
    code = ("import sys, napari_seem; assert callable(napari_seem.load_model); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_embedded_default_loads_its_trained_weights_in_eval_mode(toy_default):
    model = napari_seem.load_model()
    assert not model.training and _same_weights(model, toy_default)
    assert next(model.parameters()).device.type == "cpu"


def test_the_default_model_info_is_its_record_without_the_weights(toy_default):
    info = loading.default_model_info()
    assert "state_dict" not in info and info["path"] == str(toy_default) and info["size_mb"] > 0
    assert info["command"].startswith("napari-seem train") and info["metrics"]["steps"] == 7
    assert info["seem_config"]["decoder"]["num_queries"] == 11
    statement = loading.describe_trained(info)
    assert "default_tiny, trained 7 steps on toy_cells (nucleus, 3 images)" in statement
    assert "final loss 1.250" in statement


def test_a_missing_default_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv(loading.DEFAULT_ENV, raising=False)
    monkeypatch.setattr(loading, "DEFAULT_CHECKPOINT", tmp_path / "assets" / "default_tiny.pt")
    assert "not installed" in loading.default_problem()
    with pytest.raises(loading.DefaultModelMissing, match="not installed: expected at .*assets/default_tiny.pt"):
        napari_seem.load_model()
    with pytest.raises(FileNotFoundError, match="not installed"):
        loading.default_model_info()
    monkeypatch.setenv(loading.DEFAULT_ENV, str(tmp_path / "elsewhere.pt"))
    with pytest.raises(loading.DefaultModelMissing, match="NAPARI_SEEM_DEFAULT_MODEL points to .*elsewhere.pt"):
        napari_seem.load_model()


def test_a_corrupt_default_is_a_clear_error(tmp_path, monkeypatch):
    broken = tmp_path / "default_tiny.pt"
    broken.write_bytes(b"PK\x03\x04 half a file")
    monkeypatch.setenv(loading.DEFAULT_ENV, str(broken))
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        napari_seem.load_model()
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        loading.default_model_info()


def test_official_files_need_their_variant_and_trained_files_do_not(tmp_path):
    official = save_toy_official(tmp_path / "official.pt")
    with pytest.raises(ValueError, match="official SEEM checkpoint .* variant="):
        napari_seem.load_model(official)
    model = napari_seem.load_model(official, variant="tiny")
    assert not model.training and _same_weights(model, official)
    trained = save_toy_checkpoint(tmp_path / "trained.pt", seed=9)
    assert _same_weights(napari_seem.load_model(str(trained), variant="focalt_v1"), trained)  # its own config
    with pytest.raises(CheckpointError, match="does not match"):
        napari_seem.load_model(official, variant="default_tiny")  # a wrong variant is refused strictly


def test_a_released_checkpoint_name_is_fetched_and_read_as_its_variant(tmp_path, monkeypatch):
    from napari_seem.io import checkpoints

    official = save_toy_official(tmp_path / "seem_toy.pt")
    monkeypatch.setitem(checkpoints.REGISTRY, "seem_toy", checkpoints.OfficialCheckpoint("seem_toy.pt", "tiny"))
    fetched = []
    monkeypatch.setattr(checkpoints, "fetch_checkpoint", lambda name: fetched.append(name) or official)
    model = napari_seem.load_model("seem_toy.pt")
    assert fetched == ["seem_toy.pt"] and _same_weights(model, official)


def test_missing_and_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found: .*nope.pt"):
        napari_seem.load_model(tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        napari_seem.load_model(text, variant="tiny")
