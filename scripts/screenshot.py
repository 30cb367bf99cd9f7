"""Make ``docs/screenshot.png``: napari with the SEEM dock widget and a segmentation result.

    xvfb-run -a .venv/bin/python scripts/screenshot.py [--out docs/screenshot.png]

The scene: the synthetic nuclei time-lapse (File > Open Sample), three nuclei boxed on frame 0 as
three objects, carried through the time-lapse by propagation, with the embedded default model
(``default_tiny``, trained; the widget's first model entry).
``tests/plugin/test_screenshot.py`` builds the same scene and checks the picture is not blank.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WINDOW_SIZE = (1500, 980)


def register_plugin() -> None:
    """Make sure napari knows the plugin's manifest (a script may start before discovery)."""
    from npe2 import PluginManager, PluginManifest

    manager = PluginManager.instance()
    if "napari-seem" not in manager._manifests:
        manager.register(PluginManifest.from_distribution("napari-seem"))


def nuclei_boxes(frame: np.ndarray, count: int = 3, pad: int = 4) -> list[np.ndarray]:
    """Rectangles (4 corners, y/x) around the ``count`` largest bright blobs: what a user would draw."""
    from skimage.measure import label, regionprops

    regions = sorted(regionprops(label(frame > np.percentile(frame, 90))), key=lambda r: -r.area)[:count]
    boxes = []
    for region in regions:
        y0, x0, y1, x1 = region.bbox
        y0, x0, y1, x1 = y0 - pad, x0 - pad, y1 + pad, x1 + pad
        boxes.append(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float))
    return boxes


def make_scene(viewer, model: str | None = None):
    """Open the widget in ``viewer``, box three nuclei on frame 0 and carry them through the
    time-lapse with ``model`` (a model menu entry; default: the embedded default); returns the widget."""
    import napari_seem
    from napari_seem.plugin.models import EMBEDDED_DEFAULT
    from napari_seem.plugin.samples import nuclei_timelapse

    register_plugin()
    data, meta, _ = nuclei_timelapse(frames=8, size=256)[0]
    image = viewer.add_image(data, **meta)
    widget = napari_seem.annotate(viewer, image, model=model or EMBEDDED_DEFAULT, vocabulary="nucleus, cell")
    _, shapes = widget.ensure_prompt_layers()
    viewer.dims.set_point(0, 0)
    for box in nuclei_boxes(data[0]):
        widget.set_object(None)  # each box is a new object
        shapes.add_rectangles(np.concatenate([np.zeros((4, 1)), box], axis=1))
        widget.segment_plane(wait=True)
    widget.propagate("forward", wait=True)
    viewer.dims.set_point(0, 0)
    viewer.layers.selection.active = widget.labels_layer
    viewer.reset_view()
    return widget


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    args = parser.parse_args(argv)
    import napari

    viewer = napari.Viewer(show=True, title="napari-seem")
    viewer.window.resize(*WINDOW_SIZE)
    make_scene(viewer)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
