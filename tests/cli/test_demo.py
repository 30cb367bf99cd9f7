"""The README's main job: ``napari-seem demo`` segments the bundled nucleus image with the embedded
default model and writes labels, an overlay and a report with held-out IoUs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_seem.cli.demo import SAMPLE_LABELS
from napari_seem.cli.main import main
from napari_seem.loading import default_problem


@pytest.mark.skipif(default_problem() is not None, reason="the embedded default model file is not installed")
def test_main_job_runs_offline_on_the_embedded_default(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--clicks", "3", "--threads", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["weights"].startswith("embedded default: napari-seem default_tiny, trained")
    truth = tifffile.imread(SAMPLE_LABELS)
    clicked = tifffile.imread(out / "labels_clicks.tif")
    assert clicked.shape == truth.shape and set(np.unique(clicked)) <= {0, 1, 2, 3}
    assert [o["label"] for o in report["clicks"]] == [1, 2, 3]
    for obj in report["clicks"]:
        y, x = obj["click_yx"]
        assert truth[y, x] > 0  # every click lands inside a ground-truth nucleus
        assert 0.0 <= obj["iou"] <= 1.0
    assert report["ground_truth"]["objects"] == len(np.unique(truth)) - 1
    assert tifffile.imread(out / "labels_everything.tif").shape == truth.shape
    assert tifffile.imread(out / "labels_boxes.tif").shape == truth.shape
    assert all(0.0 <= o["box_iou"] <= 1.0 for o in report["clicks"])
    assert (out / "overlay.png").stat().st_size > 0
    assert json.loads(capsys.readouterr().out)["image_shape"] == list(truth.shape)


def test_demo_on_a_16bit_tiff_with_random_weights_says_so(tmp_path, capsys):
    rng = np.random.default_rng(0)
    plane = (rng.random((90, 130)) * 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "plane.tif", plane)
    args = ["demo", "--image", str(tmp_path / "plane.tif"), "--out", str(tmp_path / "out"), "--variant", "tiny",
            "--clicks", "2", "--threads", "1"]
    assert main(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "RANDOM" in report["weights"] and "ground_truth" not in report
    assert report["model_input_shape"] == [180, 260]  # enlarged 2x at most, not to 512
    clicked = tifffile.imread(tmp_path / "out" / "labels_clicks.tif")
    assert clicked.shape == (90, 130) and set(np.unique(clicked)) <= {0, 1, 2}
    capsys.readouterr()


def test_demo_reports_a_bad_image_clearly(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 4, 5, 6), np.uint8), photometric="minisblack")
    args = ["demo", "--image", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "out"), "--variant", "tiny"]
    assert main(args) == 2
    assert "error" in capsys.readouterr().err
