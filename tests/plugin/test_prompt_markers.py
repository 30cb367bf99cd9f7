"""Prompt markers are sized on screen, not to the image: a click on a 6000 x 6000 plane stays a small
dot when zoomed in, and does not hide the mask under it."""

from __future__ import annotations

import numpy as np

from napari_seem.plugin.prompt_panel import MARKER_PIXELS


def _marker_width(viewer) -> int:
    """Width in screen pixels of the green (positive) marker on the rendered canvas."""
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    green = (shot[..., 1] - shot[..., 0] > 100) & (shot[..., 1] - shot[..., 2] > 100)
    xs = np.nonzero(green.any(axis=0))[0]
    assert len(xs), "no marker drawn"
    return int(xs.max() - xs.min() + 1)


def test_a_click_on_a_large_plane_is_a_few_screen_pixels_wide(make_napari_viewer, seem_manifest, qtbot):
    viewer = make_napari_viewer(show=True)  # a hidden window is never drawn
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    widget.set_image_layer(viewer.add_image(np.zeros((6000, 6000), np.uint8), name="slide"))
    points, _ = widget.ensure_prompt_layers()
    points.add([3000, 3000])
    viewer.camera.center = (3000, 3000)
    for zoom in (1.0, 4.0):  # image pixels drawn 1:1, then zoomed in further
        viewer.camera.zoom = zoom
        assert _marker_width(viewer) <= MARKER_PIXELS[1] + 2  # (antialiasing)
    viewer.reset_view()  # the whole plane in view: still visible
    assert _marker_width(viewer) >= MARKER_PIXELS[0]
