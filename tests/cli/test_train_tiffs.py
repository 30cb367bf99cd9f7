"""``napari-seem train`` on folders of TIFFs, starting from a checkpoint or the embedded default."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from toy_checkpoint import save_toy_checkpoint

from napari_seem import loading
from napari_seem.cli.main import main
from napari_seem.training import read_record

FAST = ["--steps", "1", "--batch-size", "1", "--crop", "64", "--threads", "1", "--warmup", "1",
        "--objects-per-image", "1", "--max-rounds", "1"]


@pytest.fixture
def tiff_folders(tmp_path):
    """images/ and labels/ of TIFFs: a 2D plane and a 2-plane stack whose second plane is unlabelled."""
    images, labels = tmp_path / "imgs", tmp_path / "masks"
    images.mkdir()
    labels.mkdir()
    plane = np.zeros((48, 48), np.uint16)
    plane[10:30, 10:30] = 1
    tifffile.imwrite(images / "one.tif", (plane * 900 + 100).astype(np.uint16))
    tifffile.imwrite(labels / "one.tif", plane)
    tifffile.imwrite(images / "stack.tif", np.stack([plane * 900 + 100] * 2).astype(np.uint16))
    tifffile.imwrite(labels / "stack.tif", np.stack([plane * 2, np.zeros_like(plane)]))
    return images, labels


def test_train_on_tiff_folders_from_a_checkpoint(tiff_folders, tmp_path, capsys):
    images, labels = tiff_folders
    start = save_toy_checkpoint(tmp_path / "start.pt")
    code = main(["train", "--tiffs", f"{images}:{labels}:nucleus", "--init-checkpoint", str(start),
                 "--out", str(tmp_path / "run"), *FAST])
    assert code == 0, capsys.readouterr().err
    record = read_record(tmp_path / "run" / "model.pt")
    dataset = record["data"]["datasets"][0]
    assert dataset["names"] == ["one", "stack[0]"] and dataset["vocabulary"] == ["nucleus"]
    assert record["training"]["init_checkpoint"] == str(start) and record["metrics"]["steps"] == 1
    assert record["seem_config"]["decoder"]["num_queries"] == 11  # the starting checkpoint's own model


def test_init_default_is_the_embedded_model_and_its_absence_is_a_clear_error(tiff_folders, tmp_path, monkeypatch,
                                                                             capsys):
    images, labels = tiff_folders
    monkeypatch.setenv(loading.DEFAULT_ENV, str(tmp_path / "absent.pt"))
    args = ["train", "--tiffs", f"{images}:{labels}", "--init", "default", "--out", str(tmp_path / "run"), *FAST]
    assert main(args) == 2
    assert "embedded default model (default_tiny) is not installed" in capsys.readouterr().err
    default = save_toy_checkpoint(tmp_path / "default_tiny.pt")
    monkeypatch.setenv(loading.DEFAULT_ENV, str(default))
    assert main(args) == 0
    assert read_record(tmp_path / "run" / "model.pt")["training"]["init_checkpoint"] == str(default)


def test_train_without_data_or_with_empty_labels_says_what_is_missing(tiff_folders, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), *FAST]) == 2
    assert "no training data" in capsys.readouterr().err
    images, labels = tiff_folders
    for path in labels.iterdir():
        tifffile.imwrite(path, np.zeros_like(tifffile.imread(path)))
    assert main(["train", "--tiffs", f"{images}:{labels}", "--out", str(tmp_path / "run"), *FAST]) == 2
    assert "nothing to train on" in capsys.readouterr().err


def test_selection_weight_reaches_the_loss_and_the_record(tiff_folders, tmp_path, capsys):
    images, labels = tiff_folders
    args = ["train", "--tiffs", f"{images}:{labels}", "--out", str(tmp_path / "run"), "--selection-weight", "0", *FAST]
    assert main(args) == 0, capsys.readouterr().err
    tasks = read_record(tmp_path / "run" / "model.pt")["training"]["tasks"]
    assert tasks["weights"]["selection_weight"] == 0.0


def test_zoom_and_video_fraction_reach_the_record_and_bad_zoom_is_refused(tiff_folders, tmp_path, capsys):
    images, labels = tiff_folders
    args = ["train", "--tiffs", f"{images}:{labels}", "--out", str(tmp_path / "run"), "--zoom", "0.5", "2",
            "--video-fraction", "1", *FAST]
    assert main(args) == 0, capsys.readouterr().err
    training = read_record(tmp_path / "run" / "model.pt")["training"]
    assert training["tasks"]["video_fraction"] == 1.0
    assert list(training["augmentation"]["scale"]) == [0.5, 2.0]
    bad = ["train", "--tiffs", f"{images}:{labels}", "--out", str(tmp_path / "bad"), "--zoom", "2", "0.5", *FAST]
    assert main(bad) == 2
    assert "--zoom" in capsys.readouterr().err
