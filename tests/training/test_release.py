"""Packaging the embedded default: the weights are unchanged and the making is on record."""

from __future__ import annotations

import json

import torch

from napari_seem.training import load_trained, read_record
from napari_seem.training.release import package
from toy_checkpoint import save_toy_checkpoint


def test_package_keeps_weights_and_records_stages_and_evaluation(tmp_path):
    first = save_toy_checkpoint(tmp_path / "stage1.pt", seed=3, command="napari-seem train --steps 5",
                                metrics={"steps": 5, "history": [{"step": 5, "loss": 2.0}]})
    final = save_toy_checkpoint(tmp_path / "stage2.pt", seed=4, command="napari-seem train --init stage1.pt")
    report = {"protocol": "interactive", "datasets": [{"dataset": "dsb", "noc": {"NoC@85": 7.5}, "traces": [1, 2]}]}
    (tmp_path / "eval.json").write_text(json.dumps(report))

    out = package(final, tmp_path / "default.pt", stages=[first], evaluations=[tmp_path / "eval.json"])

    shipped, trained = load_trained(out), load_trained(final)
    for key, value in trained.state_dict().items():
        assert torch.equal(shipped.state_dict()[key], value)
    record = read_record(out)
    assert record["command"] == "napari-seem train --init stage1.pt"
    assert [s["command"] for s in record["lineage"]] == ["napari-seem train --steps 5"]
    assert "history" not in record["lineage"][0]["metrics"]
    assert record["evaluation"][0]["datasets"][0]["noc"] == {"NoC@85": 7.5}
    assert "traces" not in record["evaluation"][0]["datasets"][0]


def test_a_packaged_model_used_as_a_stage_brings_its_own_lineage(tmp_path):
    first = save_toy_checkpoint(tmp_path / "stage1.pt", seed=3, command="napari-seem train --steps 5")
    second = save_toy_checkpoint(tmp_path / "stage2.pt", seed=4, command="napari-seem train --init stage1.pt")
    shipped = package(second, tmp_path / "shipped.pt", stages=[first])
    final = save_toy_checkpoint(tmp_path / "stage3.pt", seed=5, command="napari-seem train --init shipped.pt")

    record = read_record(package(final, tmp_path / "default.pt", stages=[shipped]))
    assert [s["command"] for s in record["lineage"]] == ["napari-seem train --steps 5",
                                                         "napari-seem train --init stage1.pt"]
