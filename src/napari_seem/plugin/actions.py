"""The segmentation widget's *Segment* group and its actions: segment the plane, segment everything,
propagate, clear prompts and undo. Each action plans a job on the GUI thread (reading the layers
through the controller), runs it with :class:`~.workers.Jobs`, and writes what comes back.

:class:`Actions` is a mixin of :class:`~.widget.SeemWidget`; it uses the panels' settings and
layers, the controller, ``_start``/``_action`` (:class:`~.workers.Jobs`) and ``_warn``.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QGroupBox, QLabel, QPushButton, QSpinBox

from .controller import (
    DIRECTIONS,
    EVERYTHING_STRATEGIES,
    NEW_OBJECT,
    PluginError,
    class_name_of,
    parse_vocabulary,
    propagation_axis,
    relabel_new_object,
)
from .qt_helpers import form_group, hbox
from .workers import everything_body, load_body, plane_body, propagation_body


def count(n: int, thing: str) -> str:
    """``"1 object"``, ``"3 objects"``."""
    return f"{n} {thing}" + ("" if n == 1 else "s")


class Actions:
    """What the buttons and shortcuts do."""

    def _action_group(self) -> QGroupBox:
        box, form = form_group("Segment")
        self.segment_button = QPushButton("Segment plane  [Shift+S]")
        self.everything_button = QPushButton("Segment everything  [Shift+E]")
        self.all_planes_check = QCheckBox("all planes")
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.4)
        self.threshold_spin.setToolTip("segment everything keeps objects scoring above this: the mask's stability "
                                       "(point grid) or the class probability (object queries)")
        self.everything_combo = QComboBox()
        self.everything_combo.addItems(list(EVERYTHING_STRATEGIES))
        self.everything_combo.setToolTip("point grid: click a 16 x 16 grid and keep stable masks (best for the "
                                         "embedded default); object queries: SEEM's own panoptic inference")
        self.direction_combo = QComboBox()
        self.direction_combo.addItems(list(DIRECTIONS))
        self.range_check = QCheckBox("range")
        self.first_spin, self.last_spin = QSpinBox(), QSpinBox()
        self.daughters_check = QCheckBox("new ids for daughters")
        self.daughters_check.setToolTip("time-lapses: a cell that divides ends there and each daughter gets a new id, "
                                        "its mother recorded in the labels' features (parent_id); off: both "
                                        "daughters keep the mother's id")
        self.propagate_button = QPushButton("Propagate  [Shift+F: forward]")
        self.clear_button = QPushButton("Clear prompts")
        self.undo_button = QPushButton("Undo")
        form.addRow(self.segment_button)
        form.addRow(hbox(self.everything_button, self.all_planes_check))
        form.addRow("find by", hbox(self.everything_combo, QLabel("min score"), self.threshold_spin))
        form.addRow("propagate", hbox(self.direction_combo, self.range_check, self.first_spin, self.last_spin))
        form.addRow(hbox(self.propagate_button, self.daughters_check))
        form.addRow(hbox(self.clear_button, self.undo_button))
        self.segment_button.clicked.connect(lambda: self.segment_plane())
        self.everything_button.clicked.connect(lambda: self.segment_everything())
        self.everything_combo.currentTextChanged.connect(self._on_find_by_changed)
        self.propagate_button.clicked.connect(lambda: self.propagate())
        self.range_check.toggled.connect(self._update_enabled)
        self.clear_button.clicked.connect(self.clear_prompts)
        self.undo_button.clicked.connect(self.undo)
        return box

    # ------------------------------------------------------------------ API
    def load_model(self, wait: bool = False):
        """Load the chosen model now (it is otherwise loaded by the first action)."""
        return self._action("load", lambda: self._start("loading model", load_body, self.controller,
                                                        on_item=self._show_status), wait)

    def segment_plane(self, wait: bool = False):
        """Segment the objects prompted on the plane on screen (with the previous round as memory)."""
        return self._action("segment", self._start_segment, wait)

    def segment_everything(self, all_planes: bool | None = None, wait: bool = False):
        """Segment every object of the vocabulary on this plane (or all planes of independent 2D data)."""
        return self._action("everything", lambda: self._start_everything(all_planes), wait)

    def propagate(self, direction: str | None = None, frame_range: tuple[int, int] | None = None,
                  wait: bool = False):
        """Carry the current frame's labels ``direction`` along the stack axis, writing each frame."""
        return self._action("propagate", lambda: self._start_propagation(direction, frame_range), wait)

    def undo(self) -> None:
        """Undo the last change of the labels layer (the same as Ctrl+Z on it)."""
        if self.labels_layer is not None:
            self.labels_layer.undo()
            self.controller.forget()  # the undone result must not be the next round's memory

    # ------------------------------------------------------------------ planning and writing (GUI thread)
    def _start_segment(self):
        image, geometry, plane, channels = self._context()
        points, shapes = self.ensure_prompt_layers()
        labels = self.ensure_labels_layer()
        vocabulary = parse_vocabulary(self.vocabulary_edit.text())
        job = self.controller.plan_plane(image, geometry, plane, points, shapes, self.text_edit.text(),
                                         self.object_id, vocabulary, channels)

        def write(results) -> None:
            ids = self.controller.write_plane(labels, job, results, self.write_mode)
            if NEW_OBJECT in ids:  # the new object's prompts now belong to its id
                for layer in (points, shapes):
                    relabel_new_object(layer, image, plane, ids[NEW_OBJECT])
                self.set_object(ids[NEW_OBJECT])
            self.status_label.setText(self._where(geometry, plane, self._describe_objects(ids, results, job)))

        return self._start("segmenting the plane", plane_body, self.controller, job, on_item=write)

    def _start_everything(self, all_planes: bool | None):
        image, geometry, plane, channels = self._context()
        labels = self.ensure_labels_layer()
        every_plane = self.all_planes_check.isChecked() if all_planes is None else all_planes
        if every_plane and self.role != "independent" and geometry.leading:
            raise PluginError("segmenting all planes is for 'independent 2D planes' stacks; for a time-lapse "
                              "or z-stack segment this plane and propagate")
        planes = geometry.planes(plane) if every_plane else [plane]
        job = self.controller.plan_everything(image, geometry, planes, parse_vocabulary(self.vocabulary_edit.text()),
                                              self.threshold_spin.value(), channels,
                                              EVERYTHING_STRATEGIES[self.everything_combo.currentText()])
        found: list[int] = []

        def write(item) -> None:
            found.extend(self.controller.write_everything(labels, item, self.write_mode))
            text = f"{count(len(item.result), 'object')} found, {len(found)} written"
            self.status_label.setText(self._where(geometry, item.plane, text))

        return self._start("segmenting everything", everything_body, self.controller, job, on_item=write,
                           total=len(planes), history=labels)

    def _start_propagation(self, direction: str | None, frame_range: tuple[int, int] | None):
        image, geometry, plane, channels = self._context()
        axis = propagation_axis(geometry, self.role, self.axis_combo.currentData())
        labels = self.ensure_labels_layer()
        direction = direction or self.direction_combo.currentText()
        if frame_range is None and self.range_check.isChecked():
            frame_range = (self.first_spin.value(), self.last_spin.value())
        divisions = "split" if self.daughters_check.isChecked() and self.role == "time" else "lineage"
        job = self.controller.plan_propagation(image, geometry, plane, axis, labels, direction, frame_range, channels,
                                               kind=self.role, divisions=divisions)
        written: list[int] = []

        def write(frame) -> None:
            self.controller.write_frame(labels, job, frame, self.write_mode)
            written.append(frame.frame)
            lost = f", lost {sorted(frame.lost)}" if frame.lost else ""
            at = list(plane)
            at[axis] = frame.frame
            text = f"{count(len(frame.results), 'object')}{lost} ({len(written)}/{job.steps})"
            self.status_label.setText(self._where(geometry, at, text))
            self.frame_written.emit(frame.frame)

        return self._start(f"propagating {direction}", propagation_body, self.controller, job, on_item=write,
                           total=job.steps, history=labels)

    def _describe_objects(self, ids: dict[int, int], results: dict[int, Any], job) -> str:
        """The status line after a click: each object's id, class (if a vocabulary class won), size and score."""
        parts = []
        for key, label in ids.items():
            result = results[key]
            if not result.mask.any():
                self._warn(f"SEEM: object {label} came back empty: add or move prompts")
            name = class_name_of(result.class_name, job.vocabulary)
            parts.append(f"object {label}{' ' + name if name else ''}: {int(result.mask.sum())} px, "
                         f"score {result.score:.2f}")
        return "; ".join(parts)
