""""Find more like this": a region of a reference image -> its matches on the current plane, as new objects.

The region is a label of a labels layer, or the shapes of a shapes layer, on a plane of any image
layer (another image, or another frame or slice of the image being annotated). SEEM encodes the
reference image, samples the region's visual prompt there, and decodes it on the current plane (the
official 'refimg' path, :meth:`~napari_seem.engine.SeemPredictor.predict` with a
:class:`~napari_seem.prompts.ReferenceRegion`). The answer is one mask; each of its connected
parts of at least ``min_area`` pixels becomes a new object, written like any other result (the
user's labels are kept in "keep" mode) and recorded in the labels' provenance.

The three phases of the controller (plan on the GUI thread, run in the worker, write on the GUI
thread) as functions of a :class:`~.controller.SeemController`. No Qt; torch only in ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_seem.prompts import ObjectPrompt, ReferenceRegion, rasterize

from . import recording
from .axes import Geometry, PluginError, current_plane, layer_geometry
from .controller import apply_write, check_finite, update_features
from .label_writer import assign_ids
from .layer_prompts import shapes_to_prompts

MIN_AREA_FRACTION = 0.2  # a match smaller than this share of the reference region is a speck


@dataclass
class ReferenceJob:
    """Segment, on ``plane`` of the image, what ``region`` shows on ``reference_image``."""

    data: Any
    geometry: Geometry
    plane: tuple[int, ...]
    channels: tuple[int, ...] | None
    reference_image: np.ndarray  # the reference plane: [H, W] or [H, W, 3]
    region: np.ndarray  # bool, the reference plane's shape
    min_area: int
    source: str  # what the region is, in words (status line and provenance)

    @property
    def labels_plane(self) -> tuple[int, ...]:
        return self.geometry.labels_plane(self.plane)


def region_mask(region_layer: Any, reference_layer: Any, reference_geometry: Geometry,
                reference_plane: tuple[int, ...], label: int | None) -> np.ndarray:
    """The region on the reference plane: ``label`` of a labels layer, or every shape of a shapes layer
    drawn on that plane (rectangles, polygons, ellipses and paths, filled or drawn)."""
    shape = reference_geometry.plane_shape
    if hasattr(region_layer, "shape_type"):  # a shapes layer
        mask = np.zeros(shape, dtype=bool)
        for prompt in shapes_to_prompts(region_layer, reference_layer, shape, reference_plane).values():
            if prompt.boxes or prompt.scribbles or prompt.masks:
                positive, negative = rasterize(ObjectPrompt(boxes=prompt.boxes, scribbles=prompt.scribbles,
                                                            masks=prompt.masks), shape)
                mask |= positive | negative  # every shape drawn is part of the region
        what = f"the shapes of {region_layer.name!r}"
    else:
        data = region_layer.data
        lead = reference_geometry.labels_plane(reference_plane)
        if tuple(data.shape[-2:]) != tuple(shape) or data.ndim not in (2, 2 + len(lead)):
            raise PluginError(f"labels layer {region_layer.name!r} (shape {tuple(data.shape)}) does not fit the "
                              f"reference image {reference_layer.name!r} (planes of {tuple(shape)} pixels)")
        if label is None or label <= 0:
            raise PluginError("choose the label of the reference region (a positive id)")
        mask = np.asarray(data if data.ndim == 2 else data[lead]) == label
        what = f"label {label} of {region_layer.name!r}"
    if not mask.any():
        where = f" on plane {reference_plane}" if reference_plane else ""
        raise PluginError(f"the reference region is empty: {what} has no pixels{where} of {reference_layer.name!r}")
    return mask


def plan_reference(image: Any, geometry: Geometry, plane: tuple[int, ...], channels: tuple[int, ...] | None,
                   reference_layer: Any, region_layer: Any, label: int | None, world_point: Any,
                   frame: int | None = None) -> ReferenceJob:
    """A job for the region of ``region_layer`` on ``reference_layer``'s plane at the viewer's
    ``world_point`` (``frame``, when given, replaces the index of its first stack axis)."""
    if reference_layer is None:
        raise PluginError("choose the reference image layer (the image that shows the example)")
    if region_layer is None:
        raise PluginError("choose the reference region: a labels layer (and its label) or a shapes layer")
    ref_geometry = layer_geometry(reference_layer)
    ref_plane = current_plane(reference_layer, ref_geometry, world_point)
    if frame is not None and ref_geometry.leading:
        axis = ref_geometry.leading[0]
        if not 0 <= frame < ref_geometry.shape[axis]:
            raise PluginError(f"reference frame {frame} is outside 0..{ref_geometry.shape[axis] - 1}")
        ref_plane = tuple(frame if a == axis else v for a, v in enumerate(ref_plane))
    reference_image = np.asarray(reference_layer.data[ref_geometry.image_index(ref_plane)])
    check_finite(reference_image, "the reference plane")
    mask = region_mask(region_layer, reference_layer, ref_geometry, ref_plane, label)
    min_area = max(10, int(MIN_AREA_FRACTION * mask.sum()))
    kind = "shapes" if hasattr(region_layer, "shape_type") else f"label {label}"
    source = f"{kind} of {region_layer.name!r} on {reference_layer.name!r}"
    return ReferenceJob(image.data, geometry, plane, channels, reference_image, mask, min_area, source)


def run_reference(controller: Any, job: ReferenceJob):
    """The reference prompt decoded on the job's plane (worker thread): an ``ObjectResult``."""
    data = job.data[job.geometry.image_index(job.plane)]
    check_finite(data)
    predictor = controller.ensure_model()
    predictor.set_image(np.asarray(data), job.geometry.plane_channel_axis, job.channels)
    predictor.set_vocabulary(None)
    prompt = ObjectPrompt(reference=ReferenceRegion(job.reference_image, job.region))
    return predictor.predict([prompt])[0]


def matches(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    """The connected parts of ``mask`` of at least ``min_area`` pixels, largest first."""
    from scipy.ndimage import label as connected

    parts, n = connected(mask)
    if n == 0:
        return []
    areas = np.bincount(parts.ravel())[1:]
    keep = [i + 1 for i in np.argsort(-areas, kind="stable") if areas[i] >= min_area]
    return [parts == i for i in keep]


def write_reference(controller: Any, labels: Any, job: ReferenceJob, result: Any, mode: str) -> list[int]:
    """Write each match as a new object; returns the ids that got pixels."""
    found = matches(result.mask, job.min_area)
    ids = assign_ids([None] * len(found), np.asarray(labels.data))
    change = apply_write(labels, job.labels_plane, dict(zip(ids, found)), mode)
    written = sorted(set(np.unique(change.new).tolist()) - {0}) if len(change) else []
    number = recording.record_reference_round(labels, controller, job, ids, written, mode)
    update_features(labels, {i: {"class_name": "", "score": result.score, "source": "reference", "round": number}
                             for i in written})
    return written
