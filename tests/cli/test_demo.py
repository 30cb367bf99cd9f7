"""The README's main job: ``napari-seem demo`` writes labels, an overlay and a report."""

from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_seem.cli.main import main


def test_demo_on_a_16bit_tiff_writes_labels_overlay_and_report(tmp_path, capsys):
    rng = np.random.default_rng(0)
    plane = (rng.random((90, 130)) * 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "plane.tif", plane)
    assert main(["demo", "--image", str(tmp_path / "plane.tif"), "--out", str(tmp_path / "out")]) == 0
    labels = tifffile.imread(tmp_path / "out" / "labels.tif")
    assert labels.shape == (90, 130) and set(np.unique(labels)) <= {0, 1, 2}
    assert (labels == 1).any()  # the click's object is always written on top
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert "RANDOM" in report["weights"]
    assert report["model_input_shape"] == [354, 512]
    assert (tmp_path / "out" / "overlay.png").stat().st_size > 0
    assert json.loads(capsys.readouterr().out)["image_shape"] == [90, 130]


def test_demo_reports_a_bad_image_clearly(tmp_path, capsys):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 4, 5, 6), np.uint8), photometric="minisblack")
    assert main(["demo", "--image", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "out")]) == 2
    assert "error" in capsys.readouterr().err
