"""Batch commands in one process (``--local``): propagation along any axis, retries, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_seem.batch import writing
from napari_seem.cli.main import main

from batch_inputs import TARGET_SIZE, noisy_plane


def run_local(command: str, inputs: list[Path], out: Path, checkpoint: Path, *extra: str) -> tuple[int, dict]:
    code = main([command, *map(str, inputs), "--out", str(out), "--checkpoint", str(checkpoint), "--target-size",
                 TARGET_SIZE, "--threads", "1", "--no-progress", "--local", *extra])
    return code, json.loads((out / "summary.json").read_text())


def test_propagate_along_another_axis_gives_the_same_labels_in_the_files_axis_order(tiny_checkpoint, tmp_path):
    frames = np.stack([np.roll(noisy_plane(5), 2 * t, axis=1) for t in range(5)])  # (T, H, W): drifting disks
    tifffile.imwrite(tmp_path / "movie.tif", frames, photometric="minisblack")
    tifffile.imwrite(tmp_path / "volume.tif", np.ascontiguousarray(np.moveaxis(frames, 0, 2)), photometric="minisblack")
    objects = [{"id": 1, "points": [[16, 24]], "frame": 2}, {"id": 2, "boxes": [[22, 36, 40, 56]], "frame": 2}]
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"movie.tif": objects, "volume.tif": objects}))

    never_lost = ("--lost-iou", "0", "--lost-score", "0")  # random weights: faint masks, kept anyway
    code, _ = run_local("propagate", [tmp_path / "movie.tif"], tmp_path / "t", tiny_checkpoint,
                        "--prompts", str(prompts), *never_lost)
    assert code == 0
    code, summary = run_local("propagate", [tmp_path / "volume.tif"], tmp_path / "z", tiny_checkpoint,
                              "--prompts", str(prompts), "--axis", "2", "--direction", "both", *never_lost)
    assert code == 0
    movie = tifffile.imread(tmp_path / "t" / "movie_labels.tif")
    volume = tifffile.imread(tmp_path / "z" / "volume_labels.tif")
    assert movie.shape == (5, 48, 64) and volume.shape == (48, 64, 5)
    assert np.array_equal(np.moveaxis(volume, 2, 0), movie)
    assert movie[2].any() and movie[0].any() and movie[4].any()  # carried both ways from frame 2
    described = summary["files"][0]["objects"]
    assert [o["id"] for o in described] == [1, 2] and described[0]["prompted_frames"] == [2]


def test_propagate_reports_a_prompt_beyond_the_stack(tiny_checkpoint, tmp_path):
    tifffile.imwrite(tmp_path / "movie.tif", np.stack([noisy_plane(s) for s in range(3)]), photometric="minisblack")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"movie.tif": [{"points": [[16, 24]], "frame": 7}]}))
    code, summary = run_local("propagate", [tmp_path / "movie.tif"], tmp_path / "out", tiny_checkpoint,
                              "--prompts", str(prompts))
    assert code == 1
    assert "object id 1 is on frame 7, but the file has 3 plane(s)" in summary["files"][0]["error"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.json"]


def test_a_write_that_fails_is_retried_then_reported_and_leaves_nothing_partial(tiny_checkpoint, tmp_path, monkeypatch):
    for seed in range(3):
        tifffile.imwrite(tmp_path / f"im{seed}.tif", noisy_plane(seed))
    calls = {"im0_labels.tif": 0, "im1_labels.tif": 0}
    original = writing._write_tiff

    def failing(path: Path, labels) -> None:
        target = path.name[1:].split(".partial-")[0]
        if target in calls:
            calls[target] += 1
            if target == "im1_labels.tif" or calls[target] == 1:  # im0 fails once, im1 always
                path.write_bytes(b"II*\x00 half-written")
                raise OSError("disk full")
        original(path, labels)

    monkeypatch.setattr(writing, "_write_tiff", failing)
    inputs = [tmp_path / f"im{seed}.tif" for seed in range(3)]
    code, summary = run_local("everything", inputs, tmp_path / "out", tiny_checkpoint, "--vocabulary", "cell",
                              "--retries", "2")
    assert code == 1
    assert calls == {"im0_labels.tif": 2, "im1_labels.tif": 3}
    assert [f["status"] for f in summary["files"]] == ["ok", "failed", "ok"]
    assert summary["files"][1]["error"] == "OSError: disk full"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["im0_labels.tif", "im2_labels.tif", "summary.json"]


def test_a_failed_zarr_write_keeps_the_previous_output(tmp_path, monkeypatch):
    import zarr

    target = tmp_path / "x_labels.zarr"
    writing.write_labels(target, np.full((2, 3, 4), 5, np.uint16), "zarr", {"run": 1})

    def failing(path, labels, attrs):
        path.mkdir()
        (path / "zarr.json").write_text("{")  # half-written
        raise OSError("disk full")

    monkeypatch.setattr(writing, "_write_zarr", failing)
    with pytest.raises(OSError):
        writing.write_labels(target, np.zeros((2, 3, 4), np.uint16), "zarr")
    monkeypatch.undo()
    kept = zarr.open_array(str(target), mode="r")
    assert np.array_equal(kept[...], np.full((2, 3, 4), 5)) and kept.attrs["run"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_labels.zarr"]
    writing.write_labels(target, np.arange(24, dtype=np.int64).reshape(2, 3, 4) * 4000, "zarr", {"run": 2})
    replaced = zarr.open_array(str(target), mode="r")
    assert replaced.dtype == np.uint32 and replaced[1, 2, 3] == 92000 and replaced.attrs["run"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x_labels.zarr"]


def test_skip_existing_resumes_a_batch(tiny_checkpoint, tmp_path):
    for seed in range(2):
        tifffile.imwrite(tmp_path / f"im{seed}.tif", noisy_plane(seed))
    inputs = [tmp_path / "im0.tif", tmp_path / "im1.tif"]
    run_local("everything", inputs[:1], tmp_path / "out", tiny_checkpoint, "--vocabulary", "cell")
    code, summary = run_local("everything", inputs, tmp_path / "out", tiny_checkpoint, "--vocabulary", "cell",
                              "--skip-existing")
    assert code == 0
    assert summary["skipped"] == [str(inputs[0])] and [Path(f["input"]).name for f in summary["files"]] == ["im1.tif"]


def test_everything_without_a_model_runs_the_embedded_default_by_a_point_grid(tmp_path):
    """The offline default: no --checkpoint/--variant means the shipped model, and its weak object
    queries are replaced by a grid of clicks; the bundled held-out image's nuclei are found."""
    from napari_seem.cli.demo import SAMPLE_IMAGE, SAMPLE_LABELS
    from napari_seem.evaluation.instances import matched_ious

    out = tmp_path / "out"
    code = main(["everything", str(SAMPLE_IMAGE), "--vocabulary", "nucleus", "--out", str(out), "--threads", "1",
                 "--no-progress", "--local", "--min-area", "10"])
    summary = json.loads((out / "summary.json").read_text())
    assert code == 0 and summary["weights"].startswith("embedded default")
    labels = tifffile.imread(next(out.glob("*.tif")))
    truth = tifffile.imread(SAMPLE_LABELS)
    assert labels.shape == truth.shape and len(np.unique(labels)) > 10
    assert np.mean(matched_ious(labels, truth)) > 0.25


def test_an_unknown_device_is_refused_before_any_work(tiny_checkpoint, tmp_path, capsys):
    image = tmp_path / "plane.tif"
    tifffile.imwrite(image, noisy_plane(0))
    out = tmp_path / "out"
    code = main(["everything", str(image), "--vocabulary", "cell", "--out", str(out),
                 "--checkpoint", str(tiny_checkpoint), "--device", "gpu0", "--local"])
    assert code == 2 and "--device 'gpu0' is not a torch device" in capsys.readouterr().err
    assert not out.exists()


def test_propagate_a_z_stack_ends_each_nucleus_near_its_true_ends(tmp_path):
    """``--stack-kind z`` with the embedded default model: boxed nuclei end where they fade;
    as a time-lapse the same nuclei run on through slices where they are not."""
    from synthetic_instances import NUCLEI, sphere_stack

    frames, truth = sphere_stack()
    tifffile.imwrite(tmp_path / "stack.tif", frames, photometric="minisblack")
    start = 11  # both nuclei are on this slice
    objects = []
    for object_id in NUCLEI:
        ys, xs = np.nonzero(truth[start] == object_id)
        objects.append({"id": object_id, "boxes": [[int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())]],
                        "frame": start})
    (tmp_path / "prompts.json").write_text(json.dumps({"stack.tif": objects}))

    def extents(kind: str) -> dict[int, tuple[int, int]]:
        out = tmp_path / kind
        code = main(["propagate", str(tmp_path / "stack.tif"), "--prompts", str(tmp_path / "prompts.json"),
                     "--out", str(out), "--stack-kind", kind, "--threads", "1", "--no-progress", "--local"])
        assert code == 0
        labels = tifffile.imread(out / "stack_labels.tif")
        return {o: (int(np.flatnonzero((labels == o).any((1, 2)))[0]), int(np.flatnonzero((labels == o).any((1, 2)))[-1]))
                for o in NUCLEI}

    true = {o: (int(np.flatnonzero((truth == o).any((1, 2)))[0]), int(np.flatnonzero((truth == o).any((1, 2)))[-1]))
            for o in NUCLEI}
    z, time = extents("z"), extents("time")
    for o in NUCLEI:
        z_error = abs(z[o][0] - true[o][0]) + abs(z[o][1] - true[o][1])
        time_error = abs(time[o][0] - true[o][0]) + abs(time[o][1] - true[o][1])
        assert z_error <= 2 and z_error < time_error, (o, true[o], z[o], time[o])
