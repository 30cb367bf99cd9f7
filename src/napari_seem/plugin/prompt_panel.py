"""The segmentation widget's *Prompts* group and layers: the 'SEEM points' and 'SEEM shapes' prompt
layers, the output labels layer, the object being edited, point polarity, text, vocabulary and how
results are written over existing labels.

:class:`PromptPanel` is a mixin of :class:`~.widget.SeemWidget`; it uses the widget's ``viewer``,
``controller``, ``_context``/``_geometry_or_none`` (:class:`~.image_panel.ImagePanel`), ``_fail``
and ``_warn``.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Points, Shapes
from qtpy.QtWidgets import QButtonGroup, QComboBox, QGroupBox, QLineEdit, QPushButton, QRadioButton, QSpinBox

from .controller import NEW_OBJECT, PluginError
from .qt_helpers import LayerCombo, form_group, hbox
from .workers import EXPECTED_ERRORS

POINTS_NAME = "SEEM points"
SHAPES_NAME = "SEEM shapes"
LABELS_NAME = "SEEM labels"
NEW_LABELS = f"new layer '{LABELS_NAME}'"
WRITE_MODE_LABELS = {"keep": "keep existing labels", "overwrite": "overwrite", "empty": "only empty pixels"}
POLARITY_COLORS = ["lime", "red"]  # positive, negative (the order of the categories)
# Point markers stay this many screen pixels wide at any zoom (smallest, largest): sized to the image
# alone, a click on a 6000 x 6000 plane was drawn ~80 px wide when zoomed in and hid the mask.
MARKER_PIXELS = (5, 14)


class PromptPanel:
    """Prompt layers, the output layer and the per-object settings."""

    def _prompt_group(self) -> QGroupBox:
        box, form = form_group("Prompts")
        self.add_layers_button = QPushButton("Add prompt layers")
        self.labels_combo = LayerCombo(Labels, extra=NEW_LABELS)
        self.positive_radio = QRadioButton("positive")
        self.negative_radio = QRadioButton("negative  [N]")
        self.positive_radio.setChecked(True)
        self._polarity = QButtonGroup(self)
        self._polarity.addButton(self.positive_radio)
        self._polarity.addButton(self.negative_radio)
        self.object_spin = QSpinBox()
        self.object_spin.setRange(NEW_OBJECT, 2**31 - 1)
        self.object_spin.setSpecialValueText("new")
        self.new_object_button = QPushButton("New object")
        self.text_edit = QLineEdit()
        self.text_edit.setPlaceholderText("text for the current object, e.g. nucleus")
        self.vocabulary_edit = QLineEdit()
        self.vocabulary_edit.setPlaceholderText("class names, e.g. nucleus, cell")
        self.mode_combo = QComboBox()
        self.mode_combo.addItems(list(WRITE_MODE_LABELS.values()))
        form.addRow(self.add_layers_button)
        form.addRow("output", self.labels_combo)
        form.addRow("points", hbox(self.positive_radio, self.negative_radio))
        form.addRow("object id", hbox(self.object_spin, self.new_object_button))
        form.addRow("text", self.text_edit)
        form.addRow("vocabulary", self.vocabulary_edit)
        form.addRow("write", self.mode_combo)
        self.add_layers_button.clicked.connect(self._add_prompt_layers_clicked)
        self.negative_radio.toggled.connect(self._apply_feature_defaults)
        self.object_spin.valueChanged.connect(self._apply_feature_defaults)
        self.new_object_button.clicked.connect(lambda: self.set_object(None))
        return box

    # ------------------------------------------------------------------ API
    @property
    def labels_layer(self) -> Labels | None:
        return self.labels_combo.layer()

    @property
    def points_layer(self) -> Points | None:
        return self._points if self._points in self.viewer.layers else None

    @property
    def shapes_layer(self) -> Shapes | None:
        return self._shapes if self._shapes in self.viewer.layers else None

    @property
    def negative(self) -> bool:
        return self.negative_radio.isChecked()

    @property
    def object_id(self) -> int:
        """The object being edited (0 = a new object, given an id when first segmented)."""
        return self.object_spin.value()

    @property
    def write_mode(self) -> str:
        return list(WRITE_MODE_LABELS)[self.mode_combo.currentIndex()]

    def set_object(self, object_id: int | None) -> None:
        """Edit object ``object_id`` (``None``: a new object)."""
        self.object_spin.setValue(NEW_OBJECT if object_id is None else int(object_id))

    def set_negative(self, negative: bool) -> None:
        """Make new points negative (background) or positive."""
        (self.negative_radio if negative else self.positive_radio).setChecked(True)

    def ensure_prompt_layers(self) -> tuple[Points, Shapes]:
        """The 'SEEM points' and 'SEEM shapes' layers for the current image, added when missing."""
        image, geometry, _, _ = self._context()
        if self.points_layer is None or self.points_layer.ndim != image.ndim:
            self._points = self._find(Points, POINTS_NAME, image.ndim) or self.viewer.add_layer(
                points_layer(image))
        if self.shapes_layer is None or self.shapes_layer.ndim != image.ndim:
            self._shapes = self._find(Shapes, SHAPES_NAME, image.ndim) or self.viewer.add_layer(
                shapes_layer(image))
        self._apply_feature_defaults()
        return self._points, self._shapes

    def ensure_labels_layer(self) -> Labels:
        """The output labels layer: the chosen one (checked against the image), or a new one."""
        image, geometry, _, _ = self._context()
        labels = self.labels_layer
        if labels is None:
            data = np.zeros(geometry.labels_shape, dtype=np.int32)
            keep = [a for a in range(image.ndim) if a != geometry.channel_axis]
            labels = self.viewer.add_labels(data, name=LABELS_NAME, scale=np.asarray(image.scale)[keep],
                                            translate=np.asarray(image.translate)[keep])
            self.labels_combo.set_layer(labels)
            if geometry.channel_axis not in (None, 0):
                self._warn("napari aligns layers on their last axes: with the channel axis after another "
                           "axis the labels follow the wrong slider. Put channels first or split them into layers.")
        elif tuple(labels.data.shape) != geometry.labels_shape:
            raise PluginError(f"labels layer {labels.name!r} has shape {tuple(labels.data.shape)}, but image "
                              f"{image.name!r} needs {geometry.labels_shape}: choose '{NEW_LABELS}' or another layer")
        return labels

    def clear_prompts(self) -> None:
        """Remove every point and shape prompt, and the memory of previous rounds."""
        if self.points_layer is not None:
            self.points_layer.data = np.empty((0, self.points_layer.ndim))
        if self.shapes_layer is not None and len(self.shapes_layer.data):
            self.shapes_layer.selected_data = set(range(len(self.shapes_layer.data)))
            self.shapes_layer.remove_selected()
        self.controller.forget()
        self.status_label.setText("prompts cleared")

    # ------------------------------------------------------------------ helpers
    def _fits(self, labels: Labels) -> bool:
        geometry = self._geometry_or_none()
        return geometry is not None and tuple(labels.data.shape) == geometry.labels_shape

    def _find(self, kind: type, name: str, ndim: int):
        for layer in self.viewer.layers:
            if isinstance(layer, kind) and layer.name.startswith(name) and layer.ndim == ndim:
                return layer
        return None

    def _add_prompt_layers_clicked(self) -> None:
        try:
            points, _ = self.ensure_prompt_layers()
            self.ensure_labels_layer()
        except EXPECTED_ERRORS as err:
            self._fail(err)
            return
        self.viewer.layers.selection.active = points
        points.mode = "add"

    def _apply_feature_defaults(self, *args) -> None:
        """New points and shapes get the current polarity and object id."""
        defaults = {"label": "negative" if self.negative else "positive", "object": self.object_id}
        for layer in (self.points_layer, self.shapes_layer):
            if layer is not None:
                layer.feature_defaults = defaults


def _prompt_features():
    import pandas as pd

    return pd.DataFrame({"label": pd.Categorical([], categories=["positive", "negative"]),
                         "object": np.zeros(0, dtype=int)})


def points_layer(image: Image) -> Points:
    """An empty prompt-points layer on the image's grid: green positive, red negative points.

    The markers are drawn ``MARKER_PIXELS`` wide on screen at most and at least; their size in image
    pixels (1/80 of the plane's long side: about 10 screen pixels with the whole plane in view) says
    how they grow with the zoom in between, and how near a click must be to select one."""
    size = max(1.0, max(image.data.shape[image.ndim - 2: image.ndim]) / 80)
    return Points(np.empty((0, image.ndim)), ndim=image.ndim, name=POINTS_NAME, features=_prompt_features(),
                  face_color="label", face_color_cycle=POLARITY_COLORS, border_color="white", size=size,
                  canvas_size_limits=MARKER_PIXELS, scale=image.scale, translate=image.translate)


def shapes_layer(image: Image) -> Shapes:
    """An empty prompt-shapes layer on the image's grid (rectangles = boxes, paths = scribbles...)."""
    return Shapes(ndim=image.ndim, name=SHAPES_NAME, features=_prompt_features(), edge_color="label",
                  edge_color_cycle=["yellow", "magenta"], face_color="transparent", edge_width=2,
                  scale=image.scale, translate=image.translate)
