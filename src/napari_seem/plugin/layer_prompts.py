"""napari layers -> SEEM prompts, as pure functions (no Qt, no viewer; unit-tested on bare layers).

Coordinates go layer data -> world -> image data, so layers with their own ``scale``/``translate``
(or other affine transforms) land on the right pixels. A prompt layer may have fewer dimensions than
the image (a 2D points layer on a T x Y x X image applies to every plane); a layer with the image's
dimensions applies only on the plane it was drawn on.

Conventions:
* Points: positive/negative from a ``label`` feature (``"positive"``/``"negative"``, or truthy/falsy;
  default positive); object from an ``object`` feature (default 1).
* Shapes: rectangle -> box; path/line -> scribble; polygon/ellipse -> mask; object from an ``object``
  feature (default 1), positive/negative from ``label`` as for points.
* Labels: each label value is one object's mask prompt (object id = label value).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, Scribble

NEGATIVE_WORDS = {"negative", "neg", "background", "bg", "false", "0", "-", "no"}
ELLIPSE_SEGMENTS = 64


def _feature(layer: Any, name: str, index: int, default):
    features = getattr(layer, "features", None)
    if features is None or name not in features.columns or index >= len(features):
        return default
    value = features[name].iloc[index]
    return default if value is None or (isinstance(value, float) and np.isnan(value)) else value


def _is_positive(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in NEGATIVE_WORDS
    return bool(value)


def to_image_coords(layer: Any, image_layer: Any, coords: np.ndarray) -> np.ndarray:
    """Map ``coords [N, layer.ndim]`` (layer data space) to the image layer's data space
    ``[N, image.ndim]``; a layer with fewer dims is aligned to the image's trailing dims."""
    coords = np.atleast_2d(np.asarray(coords, dtype=float))
    world = np.stack([np.asarray(layer.data_to_world(c), dtype=float) for c in coords])
    pad = image_layer.ndim - world.shape[1]
    if pad > 0:  # the missing leading world dims: take the image's own origin (any plane)
        world = np.concatenate([np.zeros((len(world), pad)), world], axis=1)
    return np.stack([np.asarray(image_layer.world_to_data(w), dtype=float) for w in world])


def _on_plane(coords: np.ndarray, plane: tuple[int, ...], layer_ndim: int, image_ndim: int) -> np.ndarray:
    """Rows of ``coords [N, image_ndim]`` lying on ``plane`` (the leading, non-spatial indices)."""
    if layer_ndim < image_ndim or not plane:
        return np.ones(len(coords), dtype=bool)  # drawn in 2D: applies to every plane
    lead = np.round(coords[:, : len(plane)]).astype(int)
    return (lead == np.asarray(plane)[None]).all(axis=1)


def points_to_prompts(layer: Any, image_layer: Any, plane: tuple[int, ...] = ()) -> dict[int, ObjectPrompt]:
    """Points on ``plane`` -> ``{object_id: ObjectPrompt(points=...)}`` in image pixel (y, x)."""
    prompts: dict[int, ObjectPrompt] = defaultdict(ObjectPrompt)
    if len(layer.data) == 0:
        return {}
    coords = to_image_coords(layer, image_layer, layer.data)
    keep = _on_plane(coords, plane, layer.ndim, image_layer.ndim)
    for i in np.nonzero(keep)[0]:
        y, x = coords[i, -2], coords[i, -1]
        positive = _is_positive(_feature(layer, "label", i, "positive"))
        object_id = int(_feature(layer, "object", i, 1))
        prompts[object_id].points.append(Point(float(y), float(x), positive))
    return dict(prompts)


def shapes_to_prompts(
    layer: Any, image_layer: Any, plane_shape: tuple[int, int], plane: tuple[int, ...] = ()
) -> dict[int, ObjectPrompt]:
    """Shapes on ``plane`` -> prompts: rectangle = box, path/line = scribble, polygon/ellipse = mask."""
    prompts: dict[int, ObjectPrompt] = defaultdict(ObjectPrompt)
    for i, (vertices, kind) in enumerate(zip(layer.data, layer.shape_type)):
        coords = to_image_coords(layer, image_layer, vertices)
        if not _on_plane(coords, plane, layer.ndim, image_layer.ndim).all():
            continue
        yx = coords[:, -2:]
        object_id = int(_feature(layer, "object", i, 1))
        positive = _is_positive(_feature(layer, "label", i, "positive"))
        prompt = prompts[object_id]
        if kind == "rectangle":
            (y0, x0), (y1, x1) = yx.min(axis=0), yx.max(axis=0)
            prompt.boxes.append(Box(float(y0), float(x0), float(y1), float(x1)))
        elif kind in ("path", "line"):
            width = float(np.atleast_1d(layer.edge_width)[i]) if hasattr(layer, "edge_width") else 3.0
            prompt.scribbles.append(Scribble(tuple(map(tuple, yx)), max(width, 1.0), positive))
        elif kind in ("polygon", "ellipse"):
            outline = _ellipse_outline(yx) if kind == "ellipse" else yx
            prompt.masks.append(MaskPrompt(_fill_polygon(outline, plane_shape), positive))
        else:
            raise ValueError(f"shape {i}: unsupported shape type {kind!r}")
    return {k: v for k, v in prompts.items() if not v.is_empty()}


def labels_to_prompts(labels: np.ndarray) -> dict[int, ObjectPrompt]:
    """A label plane ``[H, W]`` -> one mask prompt per non-zero label value."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2D label plane, got shape {labels.shape}")
    return {int(v): ObjectPrompt(masks=[MaskPrompt(labels == v)]) for v in np.unique(labels) if v != 0}


def _ellipse_outline(corners: np.ndarray) -> np.ndarray:
    """napari stores an ellipse as the 4 corners of its (possibly rotated) bounding box."""
    centre = corners.mean(axis=0)
    axis_a = (corners[1] - corners[0]) / 2
    axis_b = (corners[3] - corners[0]) / 2
    t = np.linspace(0, 2 * np.pi, ELLIPSE_SEGMENTS, endpoint=False)
    return centre + np.cos(t)[:, None] * axis_a + np.sin(t)[:, None] * axis_b


def _fill_polygon(yx: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.draw import polygon

    rr, cc = polygon(yx[:, 0], yx[:, 1], shape=shape)
    mask = np.zeros(shape, dtype=bool)
    mask[rr, cc] = True
    return mask
