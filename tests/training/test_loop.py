"""The training loop: checkpoints with their metadata, strict reloading, the stop callback."""

from __future__ import annotations

import json

import pytest
import torch

from napari_seem.model import CheckpointError, build_seem
from napari_seem.training import DatasetSpec, TaskConfig, TrainConfig, load_trained, read_record, train
from napari_seem.training.data import Augmentation

from tiny import tiny_config

FAST = TaskConfig(objects_per_image=2, max_rounds=2)


def _config(tmp_path, folder, **overrides) -> TrainConfig:
    options = dict(
        out_dir=tmp_path / "run", datasets=[DatasetSpec(folder, class_name="nucleus")], holdout=["syn_c"],
        model=tiny_config(), steps=2, batch_size=2, target_size=96, augmentation=Augmentation(crop_size=64),
        tasks=FAST, warmup_steps=1, threads=1, seed=3, checkpoint_every=1, command="pytest run",
    )
    options.update(overrides)
    return TrainConfig(**options)


def test_a_two_step_run_writes_a_checkpoint_that_loads_strictly(tmp_path, synthetic_folder):
    path = train(_config(tmp_path, synthetic_folder))
    assert path == tmp_path / "run" / "model.pt" and path.is_file()
    record = read_record(path)
    assert record["format"] == "napari-seem-trained/1"
    assert record["seed"] == 3 and record["command"] == "pytest run"
    assert record["code_revision"]["git"] or record["code_revision"]["version"]
    dataset = record["data"]["datasets"][0]
    assert dataset["path"].endswith("synthetic") and dataset["count"] == 2 and dataset["excluded"] == ["syn_c"]
    assert record["data"]["holdout"] == ["syn_c"]
    metrics = record["metrics"]
    assert metrics["steps"] == 2 and metrics["complete"] and metrics["stop_reason"] == "finished"
    assert [row["step"] for row in metrics["history"]] == [1, 2]
    assert record["seem_config"]["decoder"]["num_queries"] == tiny_config().decoder.num_queries
    json.dumps(record)  # the whole record is plain data

    model = load_trained(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert set(saved) == set(model.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert not model.training


def test_the_callback_stops_cleanly_and_the_model_is_still_saved(tmp_path, synthetic_folder):
    seen = []
    path = train(_config(tmp_path, synthetic_folder, steps=50, checkpoint_every=0,
                         callback=lambda progress: seen.append(progress) or progress.step < 1))
    assert [p.step for p in seen] == [1]
    assert seen[0].total == 50 and seen[0].losses["loss"] > 0 and seen[0].checkpoint is None
    metrics = read_record(path)["metrics"]
    assert metrics["steps"] == 1 and metrics["stop_reason"] == "stopped by callback"
    load_trained(path)


def test_load_trained_refuses_other_files(tmp_path):
    official = tmp_path / "official.pt"
    torch.save(build_seem(tiny_config()).state_dict(), official)
    with pytest.raises(CheckpointError, match="seem_config"):
        load_trained(official)
    with pytest.raises(CheckpointError, match="not found"):
        load_trained(tmp_path / "missing.pt")


def test_training_on_a_gpu_saves_a_checkpoint_that_loads_on_the_cpu(tmp_path, synthetic_folder):
    """``device="auto"`` on a simulated GPU (``tests/fake_accelerator.py``): the run trains there,
    follows the CPU run's losses, and saves plain CPU tensors."""
    from fake_accelerator import simulated_accelerator

    on_cpu = read_record(train(_config(tmp_path / "cpu", synthetic_folder)))["metrics"]["history"]
    with simulated_accelerator():
        path = train(_config(tmp_path / "gpu", synthetic_folder, device="auto"))
    record = read_record(path)
    assert record["metrics"]["history"][-1]["loss"] == pytest.approx(on_cpu[-1]["loss"], rel=1e-4)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert all(type(t) is torch.Tensor and t.device.type == "cpu" for t in saved.values())
    load_trained(path)


def test_a_run_cut_off_resumes_where_it_stopped_and_ends_as_an_uncut_run(tmp_path, synthetic_folder):
    whole = train(_config(tmp_path / "whole", synthetic_folder, steps=4, checkpoint_every=2))
    # Cut off after step 2 (the callback stops it), then resumed from its train_state.pt.
    cut = _config(tmp_path / "cut", synthetic_folder, steps=4, checkpoint_every=2,
                  callback=lambda progress: progress.step < 2)
    train(cut)
    assert (tmp_path / "cut" / "run" / "train_state.pt").is_file()
    steps = []
    resumed = train(_config(tmp_path / "cut", synthetic_folder, steps=4, checkpoint_every=2, resume=True,
                            callback=lambda progress: steps.append(progress.step)))
    assert steps == [3, 4]
    metrics = read_record(resumed)["metrics"]
    uncut = read_record(whole)["metrics"]["history"]
    assert metrics["steps"] == 4 and [row["step"] for row in metrics["history"]] == [row["step"] for row in uncut]
    a, b = torch.load(whole, weights_only=True)["state_dict"], torch.load(resumed, weights_only=True)["state_dict"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_resume_without_a_saved_state_starts_from_the_beginning(tmp_path, synthetic_folder):
    steps = []
    train(_config(tmp_path, synthetic_folder, steps=2, resume=True, callback=lambda p: steps.append(p.step)))
    assert steps == [1, 2]


def test_stop_after_ends_early_on_the_longer_schedule(tmp_path, synthetic_folder):
    rates = []
    path = train(_config(tmp_path, synthetic_folder, steps=10, stop_after=2, warmup_steps=5,
                         callback=lambda p: rates.append(p.lr)))
    metrics = read_record(path)["metrics"]
    assert metrics["steps"] == 2 and metrics["stop_reason"] == "stop_after 2"
    assert rates[-1] < 3e-4 * 2 / 5 + 1e-12  # still warming up towards step 5 of 10
