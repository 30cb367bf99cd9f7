"""Packed training data: one compact file that trains like the folders it came from."""

from __future__ import annotations

import numpy as np
import pytest

from napari_seem.cli.main import main
from napari_seem.training import DatasetSpec, FolderDataset, read_record, train
from napari_seem.training.loop import packed_specs
from napari_seem.training.pack import PackedDataset, pack, read_meta

from test_loop import _config


def test_a_packed_folder_prepares_like_the_folder(tmp_path, synthetic_folder):
    path = pack([DatasetSpec(synthetic_folder, class_name="nucleus", weight=2.0)], tmp_path / "data.npz",
                holdout=["syn_c"])
    meta = read_meta(path)
    assert meta["sources"][0]["names"] == ["syn_a", "syn_b"] and meta["sources"][0]["weight"] == 2.0
    (spec,) = packed_specs(path)
    assert spec.class_name == "nucleus" and spec.weight == 2.0
    packed = spec.build(holdout=[], target_size=96)
    folder = FolderDataset(synthetic_folder, "nucleus", exclude=["syn_c"], target_size=96)
    assert isinstance(packed, PackedDataset) and packed.names == folder.names
    for i in range(len(folder)):
        a, b = packed[i], folder[i]
        assert np.array_equal(a.labels, b.labels)
        assert np.abs(a.image - b.image).max() <= 1.0  # the stretch rounded to 8 bits


def test_training_runs_from_a_packed_file_and_records_it(tmp_path, synthetic_folder):
    path = pack([DatasetSpec(synthetic_folder, class_name="nucleus")], tmp_path / "data.npz")
    out = train(_config(tmp_path, synthetic_folder, datasets=packed_specs(path), holdout=[]))
    dataset = read_record(out)["data"]["datasets"][0]
    assert dataset["kind"] == "packed" and dataset["count"] == 3


def test_the_cli_packs_and_refuses_a_file_that_is_not_packed(tmp_path, synthetic_folder, capsys):
    out = tmp_path / "data.npz"
    assert main(["pack", "--data", f"{synthetic_folder}:nucleus", "--out", str(out)]) == 0
    assert read_meta(out)["sources"][0]["class_name"] == "nucleus"
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(ValueError, match="not a napari-seem packed data file"):
        read_meta(other)
