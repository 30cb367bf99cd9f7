"""The SEEM dock widget: prompts in napari layers, results in a labels layer, the model in a worker.

Open it from *Plugins > napari-seem > SEEM segmentation*, or from Python with
:func:`napari_seem.annotate`. The widget is a thin Qt layer over
:class:`~napari_seem.plugin.controller.SeemController`: it reads the settings and layers, starts the
controller's model work in a napari worker thread, and writes what the worker yields back on the
GUI thread (so a propagation shows each frame as it is computed, and Cancel leaves every finished
frame written and nothing half-written). A propagation or a segment-everything over many planes is
one undo step of the labels layer, also when cancelled (:mod:`.undo`).

:class:`SeemWidget` is put together from one mixin per group of the dock, each in its own module:

* :class:`~.model_panel.ModelPanel` - model, checkpoint, device, CPU threads, the "find by" default;
* :class:`~.image_panel.ImagePanel` - image layer, channels, what the stack axis is;
* :class:`~.prompt_panel.PromptPanel` - prompt layers, output labels layer, object, text, vocabulary;
* :class:`~.actions.Actions` - segment plane / everything, propagate, clear, undo;
* :class:`~.reference_panel.ReferencePanel` - "find more like this" from a reference region;
* :class:`~.workers.Jobs` - the worker thread, progress bar, Cancel and waiting.

This module wires them to the viewer (layer lists, key bindings), enables what applies, and shows
messages. Keys (bound on the viewer; none is a napari default): Shift+S segment the plane, Shift+E
segment everything, Shift+F propagate forward, N toggle positive/negative points.
"""

from __future__ import annotations

import logging
import weakref

from napari.layers import Labels
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .actions import Actions
from .controller import SeemController
from .image_panel import ImagePanel
from .model_panel import ModelPanel
from .prompt_panel import LABELS_NAME, PromptPanel
from .reference_panel import ReferencePanel
from .qt_helpers import LayerCombo, disconnector, hbox, key_unbinder
from .qt_helpers import form_group as _group  # noqa: F401 - the fine-tuning widget imports these from here
from .qt_helpers import hbox as _row  # noqa: F401
from .workers import Failure as _Failure  # noqa: F401
from .workers import Jobs, error_message

__all__ = ["KEYS", "LayerCombo", "SeemWidget", "error_message"]

logger = logging.getLogger(__name__)

KEYS = {"segment": "Shift-S", "everything": "Shift-E", "forward": "Shift-F", "negative": "N"}


class SeemWidget(ModelPanel, ImagePanel, PromptPanel, Actions, ReferencePanel, Jobs, QWidget):
    """The SEEM dock widget for ``napari_viewer`` (see the module docstring)."""

    frame_written = Signal(int)  # a propagated frame (index on the propagation axis) was written
    job_finished = Signal(str)  # "done", "cancelled" or "failed", when a job ends

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.controller = SeemController()
        self._init_jobs()
        self._points = None
        self._shapes = None
        self._find_by_chosen = False  # the user set "find by": a new model keeps it
        self._setting_find_by = False
        self._build_ui()
        self._connect_viewer()
        self._refresh_layers()
        self._on_model_changed()
        self._bind_keys()

    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for group in (self._model_group(), self._image_group(), self._prompt_group(), self._action_group(),
                      self._reference_group()):
            layout.addWidget(group)
        layout.addLayout(self._status_row())
        layout.addStretch(1)

    def _status_row(self) -> QVBoxLayout:
        column = QVBoxLayout()
        self.status_label = QLabel("ready")
        self.status_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        column.addWidget(self.status_label)
        column.addLayout(hbox(self.progress_bar, self.cancel_button))
        return column

    # ================================================================== viewer wiring
    def _connect_viewer(self) -> None:
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._refresh_layers)
        events.inserted.connect(self._watch_name)
        for layer in self.viewer.layers:
            layer.events.name.connect(self._refresh_layers)
        self.destroyed.connect(disconnector(self.viewer, self._refresh_layers, self._watch_name))

    def _watch_name(self, event) -> None:
        event.value.events.name.connect(self._refresh_layers)

    def _refresh_layers(self, event=None) -> None:
        self.image_combo.refresh(self.viewer.layers)
        self.labels_combo.refresh(self.viewer.layers)
        self._refresh_reference_layers()
        if self.labels_combo.layer() is None:  # pick up a SEEM labels layer of the right shape
            for layer in self.viewer.layers:
                if isinstance(layer, Labels) and layer.name.startswith(LABELS_NAME) and self._fits(layer):
                    self.labels_combo.set_layer(layer)

    def _bind_keys(self) -> None:
        """Bind the shortcuts on this viewer; the handlers hold the widget weakly, and unbind when it goes."""
        me = weakref.ref(self)
        actions = {
            KEYS["segment"]: lambda w: w.segment_plane(),
            KEYS["everything"]: lambda w: w.segment_everything(),
            KEYS["forward"]: lambda w: w.propagate("forward"),
            KEYS["negative"]: lambda w: w.set_negative(not w.negative),
        }
        bound = {}
        for key, action in actions.items():
            def handler(viewer, action=action):
                widget = me()
                if widget is not None:
                    action(widget)

            self.viewer.bind_key(key, handler, overwrite=True)
            bound[key] = handler
        self.destroyed.connect(key_unbinder(self.viewer, bound))

    # ================================================================== state and messages
    def _update_enabled(self, *args) -> None:
        """Enable what applies to the image and the state (only Cancel while a job runs)."""
        idle = not self.busy
        geometry = self._geometry_or_none()
        stack = geometry is not None and bool(geometry.leading)
        independent = self.role == "independent"
        for widget in (self.segment_button, self.everything_button, self.load_button, self.clear_button,
                       self.undo_button, self.add_layers_button, self.threads_spin, self.reference_button):
            widget.setEnabled(idle)
        self.channels_edit.setEnabled(self.channel_axis_combo.currentData() is not None)
        self.role_combo.setEnabled(stack)
        self.axis_combo.setEnabled(stack and not independent and len(geometry.leading) > 1)
        self.all_planes_check.setEnabled(stack and independent)
        for widget in (self.propagate_button, self.direction_combo, self.range_check):
            widget.setEnabled(idle and stack and not independent)
        self.daughters_check.setEnabled(idle and stack and self.role == "time")
        for spin in (self.first_spin, self.last_spin):
            spin.setEnabled(self.range_check.isChecked() and self.range_check.isEnabled())
        self.cancel_button.setEnabled(not idle)

    def _fail(self, error: Exception) -> None:
        """Tell the user: a notification with a plain message, and the status line."""
        self.last_error = error
        message = error_message(error)
        self.status_label.setText(f"error: {message}")
        show_error(f"SEEM: {message}")

    def _warn(self, message: str) -> None:
        """A warning notification (the job goes on)."""
        show_warning(message)
