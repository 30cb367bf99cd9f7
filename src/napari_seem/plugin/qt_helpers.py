"""Small Qt pieces shared by the dock widgets: a layer combo box, form groups and rows, and the
slots that unhook a widget from its viewer when the widget is deleted."""

from __future__ import annotations

from typing import Any, Callable

from qtpy.QtWidgets import QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QWidget


class LayerCombo(QComboBox):
    """A combo box of the viewer's layers of one type (``extra``: a first, non-layer entry)."""

    def __init__(self, layer_type: type, extra: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.layer_type = layer_type
        self.extra = extra
        self._layers: list[Any] = []

    def refresh(self, layers) -> None:
        """Re-list ``layers`` of this type, keeping the current choice when it still exists."""
        current = self.layer()
        self._layers = [layer for layer in layers if isinstance(layer, self.layer_type)]
        self.blockSignals(True)
        self.clear()
        if self.extra:
            self.addItem(self.extra)
        self.addItems([layer.name for layer in self._layers])
        self.blockSignals(False)
        if current in self._layers:
            self.set_layer(current)
        elif self._layers and not self.extra:
            self.setCurrentIndex(len(self._layers) - 1)
        # Only a changed choice is news (not every layer added). Compared with ==, not "is": napari
        # hands plugins proxies of its objects, and two proxies of one layer are equal, not identical.
        if self.layer() != current:
            self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Any | None:
        index = self.currentIndex() - (1 if self.extra else 0)
        return self._layers[index] if 0 <= index < len(self._layers) else None

    def set_layer(self, layer: Any | None) -> None:
        if layer is None:
            self.setCurrentIndex(0 if self.extra else -1)
        elif layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer) + (1 if self.extra else 0))


def form_group(title: str) -> tuple[QGroupBox, QFormLayout]:
    """A titled group box with a form layout inside."""
    box = QGroupBox(title)
    form = QFormLayout(box)
    form.setContentsMargins(6, 6, 6, 6)
    return box, form


def hbox(*widgets: QWidget) -> QHBoxLayout:
    """``widgets`` side by side, without margins (one row of a form)."""
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        row.addWidget(widget)
    return row


def disconnector(viewer, refresh: Callable, watch: Callable) -> Callable[..., None]:
    """A slot that disconnects a widget's callbacks from the viewer's layer events when it is deleted."""
    def disconnect(*args) -> None:
        try:
            events = viewer.layers.events
            for event in (events.inserted, events.removed, events.reordered):
                event.disconnect(refresh)
            events.inserted.disconnect(watch)
            for layer in viewer.layers:
                layer.events.name.disconnect(refresh)
        except (RuntimeError, AttributeError):  # the viewer is being torn down as well
            pass
    return disconnect


def key_unbinder(viewer, bound: dict[str, Callable]) -> Callable[..., None]:
    """A slot that removes a widget's key bindings (only if they are still its own)."""
    def unbind(*args) -> None:
        from napari.utils.key_bindings import coerce_keybinding

        for key, handler in bound.items():
            if viewer.keymap.get(coerce_keybinding(key)) is handler:
                viewer.bind_key(key, None)
    return unbind
