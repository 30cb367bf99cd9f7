"""The segmentation widget's *Image* group: the image layer, its channel axis and channels, what the
stack axis is (time, z or independent planes) and which axis it is; and from these, the plane on
screen and how the status line names it.

:class:`ImagePanel` is a mixin of :class:`~.widget.SeemWidget`; it uses the widget's ``viewer``,
``controller``, ``direction_combo``, ``first_spin``/``last_spin`` and ``_update_enabled``.
"""

from __future__ import annotations

from typing import Sequence

from napari.layers import Image
from qtpy.QtWidgets import QComboBox, QGroupBox, QLineEdit

from .controller import (
    ROLE_LABELS,
    ROLES,
    Geometry,
    PluginError,
    current_plane,
    describe_plane,
    layer_geometry,
    parse_channels,
)
from .qt_helpers import LayerCombo, form_group, hbox


class ImagePanel:
    """The image and its axes."""

    def _image_group(self) -> QGroupBox:
        box, form = form_group("Image")
        self.image_combo = LayerCombo(Image)
        self.channel_axis_combo = QComboBox()
        self.channels_edit = QLineEdit()
        self.channels_edit.setPlaceholderText("all (up to 3), or e.g. 0 or 0,2")
        self.role_combo = QComboBox()
        self.role_combo.addItems([ROLE_LABELS[r] for r in ROLES])
        self.axis_combo = QComboBox()
        form.addRow("image", self.image_combo)
        form.addRow("channel axis", hbox(self.channel_axis_combo, self.channels_edit))
        form.addRow("stack is", self.role_combo)
        form.addRow("along axis", self.axis_combo)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.channel_axis_combo.currentIndexChanged.connect(self._on_axes_changed)
        self.channels_edit.editingFinished.connect(self.controller.forget)
        self.role_combo.currentIndexChanged.connect(self._on_axes_changed)
        self.axis_combo.currentIndexChanged.connect(self._on_axes_changed)
        return box

    # ------------------------------------------------------------------ API
    @property
    def image_layer(self) -> Image | None:
        return self.image_combo.layer()

    @property
    def role(self) -> str:
        """What the stack axis is: ``"time"``, ``"z"`` or ``"independent"`` (2D planes)."""
        return ROLES[self.role_combo.currentIndex()]

    def set_image_layer(self, layer: Image | str) -> None:
        """Choose the image layer (a layer or its name)."""
        layer = self.viewer.layers[layer] if isinstance(layer, str) else layer
        if not isinstance(layer, Image):
            raise PluginError(f"{getattr(layer, 'name', layer)!r} is not an image layer")
        self.image_combo.set_layer(layer)

    # ------------------------------------------------------------------ the image on screen
    def _context(self) -> tuple[Image, Geometry, tuple[int, ...], tuple[int, ...] | None]:
        """The image, its geometry, the plane on screen and the channel choice (or PluginError)."""
        image = self.image_layer
        if image is None:
            raise PluginError("no image: add an image layer and choose it in the SEEM widget")
        geometry = layer_geometry(image, self.channel_axis_combo.currentData())
        plane = current_plane(image, geometry, self.viewer.dims.point)
        return image, geometry, plane, parse_channels(self.channels_edit.text(), geometry)

    def _geometry_or_none(self) -> Geometry | None:
        try:
            return layer_geometry(self.image_layer, self.channel_axis_combo.currentData())
        except PluginError:
            return None

    def _where(self, geometry: Geometry, plane: Sequence[int], text: str) -> str:
        """``text`` after the plane's name for the status line ("slice 3: ..."); a 2D image's text alone."""
        name = describe_plane(geometry, plane, self.role, self.axis_combo.currentData())
        return f"{name}: {text}" if name else text

    # ------------------------------------------------------------------ reactions
    def _on_image_changed(self, *args) -> None:
        image = self.image_layer
        self.channel_axis_combo.blockSignals(True)
        self.channel_axis_combo.clear()
        self.channel_axis_combo.addItem("none")
        if image is not None and not getattr(image, "multiscale", False):
            shape, labels = image.data.shape, self._axis_labels(image)
            for axis in range(image.ndim - 2):
                self.channel_axis_combo.addItem(f"{labels[axis]} ({shape[axis]})", axis)
        self.channel_axis_combo.blockSignals(False)
        self._on_axes_changed()

    def _on_axes_changed(self, *args) -> None:
        """Re-derive the axis choices from the image and the channel axis; forget the memory."""
        self.controller.forget()
        geometry = self._geometry_or_none()
        current = self.axis_combo.currentData()
        self.axis_combo.blockSignals(True)
        self.axis_combo.clear()
        if geometry is not None:
            labels = self._axis_labels(self.image_layer)
            for axis in geometry.leading:
                self.axis_combo.addItem(f"{labels[axis]} ({geometry.shape[axis]} planes)", axis)
            if current in geometry.leading:
                self.axis_combo.setCurrentIndex(geometry.leading.index(current))
        self.axis_combo.blockSignals(False)
        if geometry is not None and geometry.leading:
            size = geometry.shape[self.axis_combo.currentData()]
            for spin in (self.first_spin, self.last_spin):
                spin.setRange(0, size - 1)
            self.last_spin.setValue(size - 1)
        if self.role == "z" and self.sender() is self.role_combo:
            self.direction_combo.setCurrentText("both")  # a z-stack is usually annotated in the middle
        self._update_enabled()

    def _axis_labels(self, layer: Image) -> list[str]:
        """Names of the layer's axes for the menus: "axis 0", plus the viewer's label when the user
        named it (napari aligns layers on their last axes; its default labels are just numbers)."""
        names = [str(n) for n in self.viewer.dims.axis_labels][-layer.ndim:]
        names = [""] * (layer.ndim - len(names)) + names
        return [f"axis {a}" + ("" if _is_number(n) or not n else f" '{n}'") for a, n in enumerate(names)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
