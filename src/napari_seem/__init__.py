"""napari-seem: SEEM promptable segmentation for microscopy, in plain PyTorch.

Importing this package is cheap: torch is imported only when a model is built, and napari only
when :func:`annotate` is called.

    model = napari_seem.load_model()              # the embedded default model (trained default_tiny)
    model = napari_seem.load_model("seem_focalt_v1")   # an official checkpoint, downloaded once
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from napari_seem.plugin.widget import SeemWidget

__version__ = "0.1.0"
__all__ = ["annotate", "load_model", "replay", "__version__"]

WIDGET_NAME = "SEEM segmentation"  # the widget's display name in napari.yaml


def load_model(checkpoint: str | None = None, device: str = "cpu", variant: str | None = None):
    """A SEEM model in eval mode: the embedded default with no ``checkpoint``, else a napari-seem
    training checkpoint, an official SEEM file of preset ``variant`` (e.g. ``"focalt_v1"``) or a
    released checkpoint's name (``"seem_focalt_v1"``). See :func:`napari_seem.loading.load_model`."""
    from napari_seem.loading import load_model as load  # torch is imported here, not with the package

    return load(checkpoint, device=device, variant=variant)


def replay(provenance: Any, image: Any, model: Any = None, checkpoint: str | None = None, **kwargs: Any):
    """Re-run the rounds recorded in a labels layer's provenance (a ``*.provenance.json`` path, its text
    or dict) on ``image``; returns a result whose ``labels`` are the regenerated labels. ``model``: a
    built model or a model menu name (default: the recorded model). See
    :func:`napari_seem.plugin.replay.replay`."""
    from napari_seem.plugin.replay import replay as run  # torch only once a model loads

    return run(provenance, image, model=model, checkpoint=checkpoint, **kwargs)


def annotate(
    viewer,
    image_layer: Any = None,
    model: Any = None,
    checkpoint: str | None = None,
    device: str | None = None,
    vocabulary: str | list[str] | None = None,
    text: str | None = None,
) -> "SeemWidget":
    """Open the SEEM dock widget in ``viewer`` (or return the open one) and set it up.

    ``image_layer``: a layer or layer name to segment. ``model``: a model name from the widget's menu
    (e.g. ``"focalt_v1"`` with ``checkpoint="seem_focalt_v1.pt"``, or
    ``"random weights (tiny, for trying the UI)"``) or a built SEEM model. ``device``: ``"auto"``,
    ``"cpu"``, ``"cuda"`` or ``"mps"``. ``vocabulary``: class names (a list or ``"nucleus, cell"``).

    The widget's ``segment_plane()``, ``segment_everything()`` and ``propagate(direction)`` return
    the running worker, or with ``wait=True`` block until the result is written::

        widget = napari_seem.annotate(viewer, "cells", vocabulary="nucleus, cell")
        widget.segment_everything(wait=True)
        widget.propagate("forward", wait=True)
    """
    widget = _dock_widget(viewer)
    if image_layer is not None:
        widget.set_image_layer(image_layer)
    if model is not None or checkpoint is not None or device is not None:
        widget.set_model(model if model is not None else widget.model_combo.currentText(), checkpoint, device)
    if vocabulary is not None:
        widget.vocabulary_edit.setText(vocabulary if isinstance(vocabulary, str) else ", ".join(vocabulary))
    if text is not None:
        widget.text_edit.setText(text)
    return widget


def _dock_widget(viewer) -> "SeemWidget":
    """The plugin's dock widget, through napari's plugin registry when the plugin is registered
    (the same dock as Plugins > napari-seem > SEEM segmentation), else docked directly."""
    from napari_seem.plugin.widget import SeemWidget

    try:
        _, widget = viewer.window.add_plugin_dock_widget("napari-seem", WIDGET_NAME)
    except (KeyError, ValueError, LookupError):  # the npe2 manifest is not registered in this process
        widget = SeemWidget(viewer)
        viewer.window.add_dock_widget(widget, name=WIDGET_NAME, area="right")
    return widget
