"""Layers -> prompts without a viewer: coordinates through layer transforms, planes, properties."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Points, Shapes

from napari_seem.plugin.layer_prompts import labels_to_prompts, points_to_prompts, shapes_to_prompts
from napari_seem.prompts import rasterize


def test_points_with_labels_objects_and_transforms():
    image = Image(np.zeros((40, 60)), scale=(0.5, 0.5))  # world = data * 0.5
    points = Points(
        np.array([[5.0, 10.0], [6.0, 12.0], [10.0, 20.0]]),  # world coords (identity transform)
        features={"label": ["positive", "negative", "positive"], "object": [1, 1, 2]},
    )
    prompts = points_to_prompts(points, image)
    assert set(prompts) == {1, 2}
    one = prompts[1].points
    assert (one[0].y, one[0].x, one[0].positive) == (10.0, 20.0, True)
    assert (one[1].y, one[1].x, one[1].positive) == (12.0, 24.0, False)
    assert (prompts[2].points[0].y, prompts[2].points[0].x) == (20.0, 40.0)


def test_points_default_to_positive_object_one_and_translate_is_honoured():
    image = Image(np.zeros((40, 60)), translate=(10, 0))
    points = Points(np.array([[15.0, 7.0]]))
    prompt = points_to_prompts(points, image)[1]
    assert (prompt.points[0].y, prompt.points[0].x, prompt.points[0].positive) == (5.0, 7.0, True)


def test_only_points_on_the_current_plane_apply_and_2d_layers_apply_everywhere():
    image = Image(np.zeros((5, 40, 60)))
    points = Points(np.array([[1, 10, 10], [3, 20, 20]], dtype=float))
    assert [p.y for p in points_to_prompts(points, image, plane=(3,))[1].points] == [20.0]
    assert points_to_prompts(points, image, plane=(2,)) == {}
    flat = Points(np.array([[10.0, 10.0]]))
    assert len(points_to_prompts(flat, image, plane=(4,))[1].points) == 1


def test_shapes_become_boxes_scribbles_and_masks():
    image = Image(np.zeros((50, 50)))
    shapes = Shapes(
        [
            np.array([[5, 5], [5, 20], [15, 20], [15, 5]], dtype=float),
            np.array([[30, 5], [30, 25], [40, 25]], dtype=float),
            np.array([[20, 30], [20, 45], [35, 45]], dtype=float),
            np.array([[40, 40], [40, 48], [48, 48], [48, 40]], dtype=float),
        ],
        shape_type=["rectangle", "path", "polygon", "ellipse"],
        features={"object": [1, 2, 3, 3]},
        edge_width=3,
    )
    prompts = shapes_to_prompts(shapes, image, (50, 50))
    box = prompts[1].boxes[0]
    assert (box.y0, box.x0, box.y1, box.x1) == (5, 5, 15, 20)
    assert prompts[2].scribbles[0].points == ((30.0, 5.0), (30.0, 25.0), (40.0, 25.0))
    assert len(prompts[3].masks) == 2
    polygon, ellipse = (m.mask for m in prompts[3].masks)
    assert polygon[25, 40] and not polygon[25, 31]  # inside / outside the triangle
    assert ellipse[44, 44] and not ellipse[40, 40]  # centre in, bounding-box corner out
    pos, _ = rasterize(prompts[2], (50, 50))
    assert pos[30, 15] and pos[35, 25]


def test_labels_become_one_mask_prompt_per_object():
    labels = np.zeros((10, 10), np.int32)
    labels[1:3, 1:3] = 4
    labels[5:9, 5:9] = 7
    prompts = labels_to_prompts(labels)
    assert set(prompts) == {4, 7}
    assert prompts[7].masks[0].mask.sum() == 16
    with pytest.raises(ValueError, match="2D label plane"):
        labels_to_prompts(np.zeros((2, 3, 4)))
