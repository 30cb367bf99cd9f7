"""Segment everything by a grid of clicks (``strategy="points"``)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from skimage import io

import napari_seem
from napari_seem.cli.demo import SAMPLE_IMAGE, SAMPLE_LABELS
from napari_seem.engine import PointGrid, SeemPredictor
from napari_seem.engine.point_grid import grid_points
from napari_seem.evaluation.instances import matched_ious


def test_grid_points_cover_the_plane_evenly():
    points = grid_points((100, 40), 4)
    assert len(points) == 16
    assert points[0] == (12.5, 5.0) and points[-1] == (87.5, 35.0)


@pytest.mark.parametrize("settings", [dict(points_per_side=0), dict(min_score=1.5), dict(max_overlap=-0.1), dict(min_foreground=2.0),
                                      dict(batch=0)])
def test_bad_grid_settings_are_refused(settings):
    with pytest.raises(ValueError):
        PointGrid(**settings)


@pytest.fixture(scope="module")
def nuclei():
    """The bundled held-out DSB image, its ground truth, and the embedded default model's predictor."""
    torch.set_num_threads(1)
    predictor = SeemPredictor(napari_seem.load_model())
    return io.imread(SAMPLE_IMAGE), tifffile.imread(SAMPLE_LABELS), predictor


def test_points_find_the_nuclei_that_the_default_models_queries_miss(nuclei):
    image, truth, predictor = nuclei
    by_points = predictor.segment_everything(["nucleus"], image=image, strategy="points", min_area=10)
    by_queries = predictor.segment_everything(["nucleus"])
    n = len(by_points)
    assert set(np.unique(by_points.labels)) == set(range(n + 1))  # ids 1..n, no overlap by construction
    assert by_points.class_names == ["nucleus"] * n
    assert all(0.3 <= s <= 1.0 for s in by_points.scores)  # stabilities above the grid's min_score
    assert all(np.count_nonzero(by_points.labels == i) >= 10 for i in range(1, n + 1))
    points_iou = float(np.mean(matched_ious(by_points.labels, truth)))
    queries_iou = float(np.mean(matched_ious(by_queries.labels, truth)))
    assert points_iou > 0.25 and points_iou > queries_iou + 0.1


def test_unknown_strategy_is_refused(nuclei):
    image, _, predictor = nuclei
    predictor.set_image(image)
    with pytest.raises(ValueError, match="strategy"):
        predictor.segment_everything(["nucleus"], strategy="grid")


class _StreakyClicker:
    """A predictor whose click on the blob at (20, 20) returns the blob, and whose click anywhere
    else returns a stable streak along the click's row (what a background click gives a model with
    position-aware features); its text prompt returns the blob, or nothing when ``blind``."""

    def __init__(self, blind: bool = False) -> None:
        from napari_seem.engine.image import PreparedImage

        self.prepared = PreparedImage(np.zeros((3, 40, 40), np.float32), (40, 40), 1.0, "fake")
        self.blob = np.zeros((40, 40), bool)
        self.blob[15:25, 15:25] = True
        self.blind = blind

    def predict(self, objects):
        from napari_seem.engine.conversion import ObjectResult

        out = []
        for prompt in objects:
            if prompt.text is not None:
                mask = np.zeros_like(self.blob) if self.blind else self.blob.copy()
            elif self.blob[int(prompt.points[0].y), int(prompt.points[0].x)]:
                mask = self.blob.copy()
            else:
                mask = np.zeros_like(self.blob)
                mask[int(prompt.points[0].y), :] = True
            probabilities = np.array([0.9, 0.1])
            out.append(ObjectResult(mask, torch.zeros(10, 10), 0.9, class_probabilities=probabilities))
        return out


def test_background_clicks_outside_the_named_foreground_are_not_instances():
    from napari_seem.engine.point_grid import segment_by_points

    labels, classes, _ = segment_by_points(_StreakyClicker(), ["nucleus"], PointGrid(points_per_side=4))
    assert labels.max() == 1 and np.array_equal(labels == 1, _StreakyClicker().blob)
    # the foreground rule off: the streaks come back as instances
    labels, _, _ = segment_by_points(_StreakyClicker(), ["nucleus"], PointGrid(points_per_side=4, min_foreground=0))
    assert labels.max() > 1
    # text that finds nothing on the plane does not wipe out the grid's instances
    labels, _, _ = segment_by_points(_StreakyClicker(blind=True), ["nucleus"], PointGrid(points_per_side=4))
    assert labels.max() > 1


def test_the_default_model_does_not_fill_the_background_with_instances(nuclei):
    image, truth, predictor = nuclei
    found = predictor.segment_everything(["nucleus"], image=image, strategy="points", min_area=10)
    nuclei_count = len(np.unique(truth)) - 1
    assert len(found) <= 1.5 * nuclei_count
    # most of what is found lies on nuclei, not on the dark background
    assert np.count_nonzero((found.labels > 0) & (truth > 0)) >= 0.6 * np.count_nonzero(found.labels)
