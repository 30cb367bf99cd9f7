"""``napari-seem replay``: regenerate saved labels from their provenance with the embedded default model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

ASSETS = Path(__file__).parents[2] / "src" / "napari_seem" / "io" / "assets"
IMAGE = ASSETS / "nuclei_dsb2018_009.png"


def _annotated(tmp_path: Path) -> tuple[Path, Path]:
    """Two clicked nuclei and one boxed one, written through the plugin's controller with the
    embedded default model, saved by the napari-seem writer: ``(labels.tif, provenance.json)``."""
    from skimage.io import imread

    from napari_seem.io.tiff import write_labels
    from napari_seem.plugin import models
    from napari_seem.plugin.axes import Geometry
    from napari_seem.plugin.controller import PlaneJob, SeemController
    from napari_seem.plugin.replay import ArrayLabels
    from napari_seem.prompts import Box, ObjectPrompt, Point

    image = np.asarray(imread(IMAGE))
    truth = tifffile.imread(ASSETS / "nuclei_dsb2018_009_labels.tif")
    centres = [np.argwhere(truth == v).mean(axis=0) for v in np.unique(truth)[1:4]]
    geometry = Geometry(tuple(image.shape), rgb=image.ndim == 3)
    controller = SeemController()
    controller.threads = 1
    controller.set_model(models.EMBEDDED_DEFAULT, None, "cpu")
    labels = ArrayLabels(geometry.labels_shape, np.int32)
    prompts = [ObjectPrompt(points=[Point(*centres[0])]), ObjectPrompt(points=[Point(*centres[1])]),
               ObjectPrompt(boxes=[Box(*(centres[2] - 8), *(centres[2] + 8))])]
    for prompt in prompts:
        job = PlaneJob(data=image, index=geometry.image_index(()), plane=(), labels_plane=(),
                       channel_axis=None, channels=None, prompts={0: prompt}, previous={0: None},
                       vocabulary=None, requested_ids={0: None}, geometry=geometry)
        controller.write_plane(labels, job, controller.run_plane(job), "keep")
    assert len(np.unique(labels.data)) == 4  # three objects and background
    tif = tmp_path / "nuclei_labels.tif"
    written = write_labels(str(tif), labels.data, {"metadata": labels.metadata})
    return tif, Path(written[1])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "napari_seem.cli.main", *args], capture_output=True, text=True)


def test_replay_on_the_same_model_gives_the_saved_labels(tmp_path):
    tif, record = _annotated(tmp_path)
    out = tmp_path / "replayed.tif"
    run = _cli("replay", str(record), str(IMAGE), "--out", str(out), "--compare", str(tif), "--threads", "1")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["identical"] and report["same_model"] and report["rounds"] == 3 and report["objects"] == 3
    np.testing.assert_array_equal(tifffile.imread(out), tifffile.imread(tif))
    assert (tmp_path / "replayed.provenance.json").is_file()  # the replayed labels carry their provenance


def test_replay_with_another_model_is_reported_as_such(tmp_path):
    from skimage.io import imread

    import napari_seem
    from napari_seem.plugin import models

    tif, record = _annotated(tmp_path)
    result = napari_seem.replay(record, np.asarray(imread(IMAGE)), model=models.RANDOM_TINY)
    assert not result.same_model
    assert result.labels.shape == tifffile.imread(tif).shape


def test_bad_arguments_fail_fast_and_plainly(tmp_path):
    start = time.perf_counter()
    run = _cli("replay", str(tmp_path / "missing.provenance.json"), str(IMAGE), "--out", str(tmp_path / "x.tif"))
    assert run.returncode == 2 and "provenance file not found" in run.stderr
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "other"}')
    run = _cli("replay", str(bad), str(IMAGE), "--out", str(tmp_path / "x.tif"))
    assert run.returncode == 2 and "not a napari-seem provenance record" in run.stderr
    assert time.perf_counter() - start < 8  # two runs, each well under torch's import time


@pytest.mark.parametrize("name", ["missing.png"])
def test_a_missing_image_is_named(tmp_path, name):
    record = tmp_path / "r.provenance.json"
    record.write_text(json.dumps({"format": "napari-seem provenance", "format_version": 1, "rounds": []}))
    run = _cli("replay", str(record), str(tmp_path / name), "--out", str(tmp_path / "x.tif"))
    assert run.returncode == 2 and "image not found" in run.stderr
