"""TIFF reader/writer and the npe2 manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_seem
from napari_seem.io.tiff import get_reader, write_labels
from napari_seem.plugin.samples import cell, nuclei_timelapse


def test_reader_reads_stacks_and_declines_other_files(tmp_path):
    stack = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    tifffile.imwrite(tmp_path / "movie.tif", stack, photometric="minisblack")
    reader = get_reader(str(tmp_path / "movie.tif"))
    (data, meta, kind), = reader(str(tmp_path / "movie.tif"))
    assert kind == "image" and np.array_equal(data, stack) and meta["name"] == "movie"
    assert get_reader(str(tmp_path / "movie.png")) is None


def test_labels_round_trip_atomically(tmp_path):
    labels = np.zeros((2, 8, 8), np.uint16)
    labels[1, 2:4, 2:4] = 7
    (written,) = write_labels(str(tmp_path / "seg_labels"), labels, {})
    assert written.endswith("seg_labels.tif") and not list(tmp_path.glob(".*partial"))
    (data, _, kind), = get_reader(written)(written)
    assert kind == "labels" and np.array_equal(data, labels)
    with pytest.raises(ValueError, match="integers"):
        write_labels(str(tmp_path / "x.tif"), labels.astype(float), {})


def test_sample_data():
    (image, meta, kind), = cell()
    assert image.ndim == 2 and kind == "image"
    (movie, meta, _), = nuclei_timelapse(frames=4, size=64)
    assert movie.shape == (4, 64, 64) and movie.dtype == np.uint16 and movie.max() > 1000


def test_manifest_is_valid_and_shipped():
    from npe2 import PluginManifest

    path = Path(napari_seem.__file__).parent / "napari.yaml"
    manifest = PluginManifest.from_file(path)
    assert manifest.name == "napari-seem"
    assert {c.id for c in manifest.contributions.commands} >= {"napari-seem.get_reader", "napari-seem.write_labels"}
    manifest.validate_imports()
