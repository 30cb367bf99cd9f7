"""Fine-tuning data without Qt: layers and TIFF folders -> training pairs, settings -> TrainConfig."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from napari.layers import Image, Labels

from napari_seem.plugin.controller import PluginError
from napari_seem.plugin.finetune import FinetuneSettings, default_output, plan_training
from napari_seem.plugin.training_pairs import describe_pairs, folder_pairs, layer_pairs, stack_pairs


def _discs(shape, centres, radius=6) -> np.ndarray:
    """int32 labels ``shape`` with discs 1, 2, ... at ``centres``."""
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for object_id, (cy, cx) in enumerate(centres, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = object_id
    return labels


def test_a_2d_image_and_its_labels_make_one_pair():
    labels = _discs((40, 50), [(10, 10), (25, 30)])
    image = Image(labels * 100.0 + 5, name="cells")
    found = layer_pairs(image, Labels(labels.astype(np.uint16), name="painted"))
    assert found.names == ["cells"] and found.objects == 2 and not found.skipped
    plane, plane_labels = found.pairs[0]
    assert plane.shape == (40, 50) and plane_labels.dtype == np.int32
    np.testing.assert_array_equal(plane_labels, labels)
    assert found.channel_axis is None and found.channels is None


def test_planes_without_labels_are_skipped():
    labels = np.stack([_discs((32, 32), [(10, 10)]), np.zeros((32, 32), np.int32), _discs((32, 32), [(20, 20), (8, 8)])])
    image = Image(np.random.default_rng(0).random((3, 32, 32)), name="movie")
    found = layer_pairs(image, Labels(labels))
    assert found.names == ["movie[0]", "movie[2]"] and found.skipped == ["movie[1]"]
    np.testing.assert_array_equal(found.pairs[1][0], image.data[2])
    assert describe_pairs(found) == "2 planes, 3 objects (movie[0], movie[2]); 1 without labels skipped"


def test_a_channel_axis_keeps_every_channel_of_a_plane_and_the_choice():
    data = np.random.default_rng(1).random((2, 4, 24, 24))  # (C, Z, Y, X)
    labels = np.zeros((4, 24, 24), np.int32)
    labels[3, 5:10, 5:10] = 7
    found = layer_pairs(Image(data, name="two"), Labels(labels), channel_axis=0, channels_text="1")
    assert found.names == ["two[3]"] and found.channel_axis == 0 and found.channels == (1,)
    np.testing.assert_array_equal(found.pairs[0][0], data[:, 3])
    with pytest.raises(PluginError, match="channels among 0..1"):
        layer_pairs(Image(data, name="two"), Labels(labels), channel_axis=0, channels_text="4")


def test_an_rgb_plane_is_one_image():
    rgb = np.random.default_rng(2).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    found = layer_pairs(Image(rgb, rgb=True, name="rgb"), Labels(_discs((20, 30), [(10, 15)])))
    assert found.pairs[0][0].shape == (20, 30, 3) and found.channel_axis is None


def test_bad_layers_are_clear_errors():
    image = Image(np.zeros((3, 32, 32)), name="movie")
    with pytest.raises(PluginError, match=r"shape \(32, 32\), but image 'movie' needs \(3, 32, 32\)"):
        layer_pairs(image, Labels(np.zeros((32, 32), np.int32), name="flat"))
    with pytest.raises(PluginError, match="nothing to train on"):
        layer_pairs(image, Labels(np.zeros((3, 32, 32), np.int32)))
    with pytest.raises(PluginError, match="no labels"):
        layer_pairs(image, None)
    with pytest.raises(PluginError, match="integer object ids"):
        stack_pairs(np.zeros((8, 8)), np.ones((8, 8), np.float32), "floaty")


def test_tiff_folders_pair_by_name_and_split_stacks(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    tifffile.imwrite(images / "a.tif", np.full((32, 32), 100, np.uint16))
    tifffile.imwrite(labels / "a.tiff", _discs((32, 32), [(16, 16)]).astype(np.uint16))
    stack = np.stack([_discs((32, 32), [(5, 5)]), np.zeros((32, 32), np.int32)])
    tifffile.imwrite(images / "b.tif", np.ones((2, 32, 32), np.float32))
    tifffile.imwrite(labels / "b.tif", stack.astype(np.uint16))
    tifffile.imwrite(images / "c.tif", np.ones((32, 32), np.uint8))  # no labels file
    found = folder_pairs(images, labels)
    assert found.names == ["a", "b[0]"]
    assert found.skipped == ["b[1]", "c.tif (no labels file)"]
    with pytest.raises(PluginError, match="labels folder not found"):
        folder_pairs(images, tmp_path / "missing")
    with pytest.raises(PluginError, match="no TIFF files"):
        folder_pairs(tmp_path, labels)  # tmp_path holds folders only


def test_settings_become_a_checked_training_config(tmp_path, monkeypatch):
    from napari_seem import loading

    found = layer_pairs(Image(np.ones((32, 32)), name="cells"), Labels(_discs((32, 32), [(16, 16)])))
    start = tmp_path / "start.pt"
    start.write_bytes(b"checked later, in the worker")
    settings = FinetuneSettings(output=tmp_path / "out" / "tuned", start="checkpoint", checkpoint=start,
                                class_name=" nucleus ", steps=30, time_limit_min=0.5, target_size=128)
    config = plan_training(found, settings, "layers 'cells'")
    assert config.out_dir == tmp_path / "out" and config.checkpoint_name == "tuned.pt"
    assert config.init_checkpoint == start and config.steps == 30 and config.time_limit_s == 30.0
    assert config.augmentation.crop_size == 128 and config.target_size == 128 and config.warmup_steps == 3
    spec = config.datasets[0]
    assert spec.class_name == "nucleus" and spec.names == ["cells"] and len(spec.pairs) == 1

    (tmp_path / "taken.pt").write_bytes(b"precious")
    for change, message in [({"output": tmp_path / "taken.pt"}, "exists already"), ({"steps": 0}, "at least 1"),
                            ({"checkpoint": tmp_path / "nope.pt"}, "checkpoint file not found"),
                            ({"class_name": " "}, "class name"), ({"start": "magic"}, "unknown starting model")]:
        with pytest.raises(PluginError, match=message):
            plan_training(found, FinetuneSettings(**{**vars(settings), **change}))
    assert (tmp_path / "taken.pt").read_bytes() == b"precious"
    monkeypatch.setenv(loading.DEFAULT_ENV, str(tmp_path / "absent.pt"))
    with pytest.raises(PluginError, match="embedded default model .* is not installed"):
        plan_training(found, FinetuneSettings(output=tmp_path / "x.pt", start="default"))
    random_start = plan_training(found, FinetuneSettings(output=tmp_path / "x.pt", start="random"))
    assert random_start.init_checkpoint is None and random_start.model == "default_tiny"


def test_default_outputs_never_name_an_existing_file(tmp_path):
    import datetime

    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = default_output("my cells", tmp_path, now)
    assert first == tmp_path / "my_cells-20260102-030405.pt"
    first.write_bytes(b"")
    assert default_output("my cells", tmp_path, now) == tmp_path / "my_cells-20260102-030405-2.pt"
