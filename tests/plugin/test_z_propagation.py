"""The widget's "z" stack kind: nuclei propagated through a z-stack end where they end.

A synthetic confocal-like stack with known extents: two spheres of different heights, blurred in 3D
(out-of-focus light fades over a slice or two past each end, as in a real stack) with noise. Their
masks are painted on one slice and propagated both ways with the embedded default model.
"""

from __future__ import annotations

import numpy as np

from napari_seem.plugin import models
from napari_seem.plugin.axes import ROLES

from synthetic_instances import NUCLEI, sphere_stack

def extent(stack: np.ndarray, object_id: int) -> tuple[int, int]:
    slices = np.flatnonzero((stack == object_id).any(axis=(1, 2)))
    return int(slices[0]), int(slices[-1])


def test_z_kind_ends_each_nucleus_within_one_slice_of_its_true_ends(seem, qtbot):
    viewer, widget = seem
    frames, truth = sphere_stack()
    widget.set_model(models.EMBEDDED_DEFAULT)
    widget.controller.lost_options = {}  # the session's own settings: the stack kind picks the rule
    widget.set_image_layer(viewer.add_image(frames, name="embryo"))
    widget.role_combo.setCurrentIndex(ROLES.index("z"))
    start = 11  # both nuclei are on this slice
    viewer.dims.set_point(0, start)
    labels = widget.ensure_labels_layer()
    labels.data[start] = truth[start]
    labels.refresh()
    widget.propagate("both", wait=True)

    for object_id in NUCLEI:
        first, last = extent(truth, object_id)
        got = extent(labels.data, object_id)
        assert abs(got[0] - first) <= 1 and abs(got[1] - last) <= 1, (object_id, (first, last), got)


def test_the_stack_kind_reaches_the_session(seem, qtbot):
    """The role chosen in the widget is the job's kind, which the video session gets."""
    viewer, widget = seem
    widget.controller.lost_options = {}
    widget.set_image_layer(viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack"))
    labels = widget.ensure_labels_layer()
    labels.data[0, 8:16, 8:16] = 1
    for role in ("z", "time"):
        widget.role_combo.setCurrentIndex(ROLES.index(role))
        viewer.dims.set_point(0, 0)
        planned = []
        original = widget.controller.plan_propagation

        def plan(*args, **kwargs):
            planned.append(original(*args, **kwargs))
            return planned[-1]

        widget.controller.plan_propagation = plan
        widget.propagate("forward", wait=True)
        widget.controller.plan_propagation = original
        assert widget.controller.session_options(planned[-1])["stack_kind"] == role
