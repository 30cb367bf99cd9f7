"""Batch commands on a Dask LocalCluster (two worker processes on 127.0.0.1) give the single-process
run's outputs bit for bit; failed files are reported while the others are written; nothing partial
is left behind; a failing task is retried."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_seem.cli.main import main

from batch_inputs import TARGET_SIZE

GOOD = ["a_labels.tif", "b_labels.tif", "c_labels.tif", "stack_labels.tif"]


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", processes=True, dashboard_address=None,
                      env={"OMP_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        yield client


def run_batch(command: str, inputs: Path, out: Path, checkpoint: Path, *extra: str) -> tuple[int, dict]:
    code = main([command, str(inputs), "--out", str(out), "--checkpoint", str(checkpoint), "--target-size",
                 TARGET_SIZE, "--threads", "1", "--no-progress", *extra])
    return code, json.loads((out / "summary.json").read_text())


def read_outputs(out: Path) -> dict[str, np.ndarray]:
    import zarr

    arrays = {}
    for path in sorted(out.iterdir()):
        if path.suffix == ".tif":
            arrays[path.name] = tifffile.imread(path)
        elif path.suffix == ".zarr":
            arrays[path.name] = zarr.open_array(str(path), mode="r")[...]
    return arrays


def comparable(summary: dict) -> dict[str, dict]:
    """Per input file name, what must not depend on where the tasks ran (a failed file: its status;
    the error of a split stack also names the failed planes)."""
    files = {}
    for entry in summary["files"]:
        kept = {k: v for k, v in entry.items() if k not in ("worker", "seconds", "tasks", "output", "input")}
        files[Path(entry["input"]).name] = kept if entry["status"] == "ok" else {"status": entry["status"]}
    return files


@pytest.fixture(scope="module")
def segment_reference(inputs, tiny_checkpoint, tmp_path_factory):
    """The single-process run (no Dask) of ``segment`` on the test inputs."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code, summary = run_batch("segment", inputs, out, tiny_checkpoint, "--prompts",
                              str(inputs.parent / "prompts.json"), "--local")
    return code, summary, read_outputs(out)


def test_segment_on_the_cluster_equals_the_single_process_run(client, inputs, tiny_checkpoint, segment_reference,
                                                              tmp_path):
    ref_code, ref_summary, ref_outputs = segment_reference
    out = tmp_path / "out"
    # Stacks split into tasks of 2 planes on the cluster: the assembled file must still be the same.
    code, summary = run_batch("segment", inputs, out, tiny_checkpoint, "--prompts", str(inputs.parent / "prompts.json"),
                              "--scheduler", client.scheduler.address, "--planes-per-task", "2")
    assert code == ref_code == 1  # two inputs fail, the others are written
    outputs = read_outputs(out)
    assert sorted(outputs) == sorted(ref_outputs) == GOOD
    for name in GOOD:
        assert outputs[name].dtype == ref_outputs[name].dtype and np.array_equal(outputs[name], ref_outputs[name]), name
    assert comparable(summary) == comparable(ref_summary)
    assert next(f for f in summary["files"] if Path(f["input"]).name == "stack.tif")["tasks"] == 2

    failed = {Path(f["input"]).name: f["error"] for f in summary["files"] if f["status"] == "failed"}
    assert sorted(failed) == ["bad_prompt_stack.tif", "corrupt.tif"]
    assert "cannot read" in failed["corrupt.tif"]
    assert failed["bad_prompt_stack.tif"] == "planes 2..3: " + next(
        f["error"] for f in ref_summary["files"] if f["input"].endswith("bad_prompt_stack.tif"))
    assert "frame 3, object id 2: Point(y=16.0, x=900.0, positive=True)" in failed["bad_prompt_stack.tif"]
    assert "outside the 48x64 image" in failed["bad_prompt_stack.tif"]
    # Nothing else in the output folder: no partial files, no parts of the failed stack.
    assert sorted(p.name for p in out.iterdir()) == sorted(GOOD + ["summary.json"])

    a, stack = outputs["a_labels.tif"], outputs["stack_labels.tif"]
    assert a.shape == (48, 64) and set(np.unique(a)) <= {0, 1, 7} and (a == 7).any()  # the box object is on top
    assert stack.shape == (4, 48, 64) and not stack[1].any() and stack[0].any()  # no object on frame 1


def test_everything_on_the_cluster_equals_the_single_process_run(client, inputs, tiny_checkpoint, tmp_path):
    options = ["--vocabulary", "nucleus,cell", "--strategy", "queries", "--object-threshold", "0", "--overlap-threshold", "0",
               "--format", "zarr"]
    ref_code, reference = run_batch("everything", inputs, tmp_path / "ref", tiny_checkpoint, *options, "--local")
    code, summary = run_batch("everything", inputs, tmp_path / "out", tiny_checkpoint, *options,
                              "--scheduler", client.scheduler.address, "--planes-per-task", "1")
    assert code == ref_code == 1 and [Path(f["input"]).name for f in summary["files"] if f["status"] == "failed"] == [
        "corrupt.tif"]
    outputs, ref_outputs = read_outputs(tmp_path / "out"), read_outputs(tmp_path / "ref")
    assert sorted(outputs) == sorted(ref_outputs) and len(outputs) == 5
    for name, labels in outputs.items():
        assert labels.dtype == ref_outputs[name].dtype and np.array_equal(labels, ref_outputs[name]), name
    assert comparable(summary) == comparable(reference)
    assert outputs["bad_prompt_stack_labels.zarr"].shape == (4, 48, 64)
    assert all(labels.max() >= 1 for labels in outputs.values())  # loose thresholds: instances everywhere


def test_a_failing_task_is_retried_and_one_that_keeps_failing_is_reported(client, inputs, tiny_checkpoint,
                                                                          segment_reference, tmp_path):
    markers = tmp_path / "attempts"
    markers.mkdir()
    _inject_write_failures(client, str(markers), fail_once=["b_labels.tif"], fail_always=["c_labels.tif"])
    try:
        out = tmp_path / "out"
        code, summary = run_batch("segment", inputs, out, tiny_checkpoint, "--prompts",
                                  str(inputs.parent / "prompts.json"), "--scheduler", client.scheduler.address,
                                  "--retries", "1")
    finally:
        _restore_writes(client)
    assert code == 1
    attempts = sorted(p.name.split(".tif.")[0] for p in markers.iterdir())
    assert attempts == ["b_labels", "b_labels", "c_labels", "c_labels"]  # each failed once, retried once
    status = {Path(f["input"]).name: f for f in summary["files"]}
    assert status["b.tif"]["status"] == "ok"
    assert status["c.png"]["status"] == "failed" and "OSError: injected write failure" in status["c.png"]["error"]
    outputs = read_outputs(out)
    assert sorted(outputs) == ["a_labels.tif", "b_labels.tif", "stack_labels.tif"]
    for name, labels in outputs.items():
        assert np.array_equal(labels, segment_reference[2][name]), name
    # The half-written temporaries of the failed attempts are gone.
    assert sorted(p.name for p in out.iterdir()) == sorted([*outputs, "summary.json"])


def _inject_write_failures(client, markers: str, fail_once: list[str], fail_always: list[str]) -> None:
    """In every worker: writing a TIFF named in ``fail_once`` fails on the first attempt, in
    ``fail_always`` on every attempt, each after half-writing its temporary file (a crash mid-write)."""

    def install() -> None:
        import uuid
        from pathlib import Path

        import napari_seem.batch.writing as writing

        original = getattr(writing, "_original_write_tiff", writing._write_tiff)
        writing._original_write_tiff = original

        def failing(path: Path, labels) -> None:
            target = path.name[1:].split(".partial-")[0]  # ".b_labels.tif.partial-<id>" -> "b_labels.tif"
            if target in fail_once + fail_always:
                (Path(markers) / f"{target}.{uuid.uuid4().hex}").touch()
                attempts = len(list(Path(markers).glob(f"{target}.*")))
                if target in fail_always or attempts == 1:
                    path.write_bytes(b"II*\x00 half-written")
                    raise OSError(f"injected write failure for {target}")
            original(path, labels)

        writing._write_tiff = failing

    client.run(install)


def _restore_writes(client) -> None:
    def restore() -> None:
        import napari_seem.batch.writing as writing

        writing._write_tiff = getattr(writing, "_original_write_tiff", writing._write_tiff)

    client.run(restore)


def test_precompute_on_the_cluster_fills_the_cache_as_the_single_process_run(client, inputs, tmp_path):
    good = [str(inputs / name) for name in ("a.tif", "stack.tif", "c.png")]
    model = ["--variant", "tiny", "--target-size", TARGET_SIZE, "--threads", "1"]  # random weights, seed 0
    assert main(["precompute", *good, "--cache", str(tmp_path / "reference"), *model]) == 0
    code = main(["precompute", str(inputs), "--cache", str(tmp_path / "cluster"), *model,
                 "--scheduler", client.scheduler.address, "--summary", str(tmp_path / "summary.json")])
    assert code == 1  # the corrupt TIFF; the other files are encoded
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [Path(f["input"]).name for f in summary["files"] if f["status"] == "failed"] == ["corrupt.tif"]
    assert summary["planes"] == summary["misses"] == 1 + 1 + 4 + 4 + 1  # a, b, stack, bad_prompt_stack, c
    reference, cluster = ({p.name: (p / "zarr.json").read_bytes() for p in (tmp_path / name).iterdir()
                           if len(p.name) == 64} for name in ("reference", "cluster"))  # entries only
    assert len(reference) == 6 and set(reference) <= set(cluster)
    # The metadata holds each array's sha256: the same bytes mean bit-identical features.
    assert all(cluster[key] == meta for key, meta in reference.items())
