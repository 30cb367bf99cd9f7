"""A real, shown napari window with the SEEM dock and a result: the screenshot is not blank.

The scene is the one ``scripts/screenshot.py`` renders into ``docs/screenshot.png``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from napari_seem.loading import default_problem
from napari_seem.plugin.models import EMBEDDED_DEFAULT

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "screenshot.py"


def _screenshot_script():
    spec = importlib.util.spec_from_file_location("seem_screenshot_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(default_problem() is not None, reason="the embedded default model file is not installed")
def test_screenshot_shows_the_widget_and_the_labels(make_napari_viewer, seem_manifest, qtbot):
    viewer = make_napari_viewer(show=True)  # a hidden window is never drawn
    viewer.window.resize(1200, 800)
    widget = _screenshot_script().make_scene(viewer, model=EMBEDDED_DEFAULT)
    labels = widget.labels_layer.data
    for frame in labels:  # 3 boxed objects on frame 0, carried through every frame by the trained model
        assert set(np.unique(frame)) == {0, 1, 2, 3}

    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.ndim == 3 and shot.shape[0] >= 600 and shot.shape[1] >= 900
    rgb = shot[..., :3].reshape(-1, 3)
    assert rgb.std() > 20, "window screenshot is blank"
    assert len(np.unique(rgb, axis=0)) > 200  # text, widgets, image and label colours
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].reshape(-1, 3).astype(int)
    colourful = np.abs(canvas - canvas.mean(axis=1, keepdims=True)).max(axis=1) > 40  # not gray
    assert colourful.mean() > 0.005, "no label colours on the canvas"
