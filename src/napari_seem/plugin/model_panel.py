"""The segmentation widget's *Model* group: which model, which checkpoint, which device, how many
CPU threads, and which way segment-everything finds objects for that model ("find by").

:class:`ModelPanel` is a mixin of :class:`~.widget.SeemWidget`; it uses the widget's ``controller``,
its ``everything_combo`` (built by :class:`~.actions.Actions`) and ``_warn``.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QFileDialog, QGroupBox, QLabel, QLineEdit, QPushButton, QSpinBox

from napari_seem.user_models import LABEL_PREFIX as FINE_TUNED_PREFIX

from . import models
from .controller import PluginError
from .qt_helpers import form_group, hbox
from .threads import available_cpus, default_threads

POINT_GRID, OBJECT_QUERIES = "point grid", "object queries"  # the "find by" menu's entries


def default_find_by(model_name: str) -> str:
    """How segment-everything finds objects for a model the user has not set "find by" for.

    napari-seem's own model family (the embedded default and the models fine-tuned from it, listed
    as ``fine-tuned: ...``) learned little from its object queries: on held-out DSB nuclei they match
    with IoU 0.09 against 0.35 for the point grid. Other models (official SEEM checkpoints) are
    meant to use their object queries."""
    own_family = model_name == models.EMBEDDED_DEFAULT or model_name.startswith(FINE_TUNED_PREFIX)
    return POINT_GRID if own_family else OBJECT_QUERIES


class ModelPanel:
    """The model settings and the "find by" default that goes with the model."""

    def _model_group(self) -> QGroupBox:
        box, form = form_group("Model")
        self.model_combo = QComboBox()
        self._fill_model_combo()
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("checkpoint .pt (optional)")
        self.browse_button = QPushButton("Browse…")
        self.device_combo = QComboBox()
        self.device_combo.addItems([d if d == "auto" else d.upper() for d in models.DEVICES])
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(1, available_cpus())
        self.threads_spin.setValue(default_threads())
        self.threads_spin.setToolTip("CPU threads the model runs on. The default, half the cores, stays fast "
                                     "while napari and other programs use the rest; raise it on an idle machine.")
        self.controller.threads = self.threads_spin.value()
        self.weights_label = QLabel()
        self.weights_label.setWordWrap(True)
        self.load_button = QPushButton("Load model")
        form.addRow("model", self.model_combo)
        form.addRow("checkpoint", hbox(self.checkpoint_edit, self.browse_button))
        form.addRow("device", hbox(self.device_combo, QLabel("threads"), self.threads_spin, self.load_button))
        form.addRow(self.weights_label)
        self.model_combo.currentIndexChanged.connect(self._on_model_chosen)
        self.checkpoint_edit.editingFinished.connect(self._on_model_changed)
        self.device_combo.currentIndexChanged.connect(self._on_model_changed)
        self.threads_spin.valueChanged.connect(self._on_threads_changed)
        self.browse_button.clicked.connect(self._browse_checkpoint)
        self.load_button.clicked.connect(lambda: self.load_model())
        return box

    # ------------------------------------------------------------------ API
    @property
    def threads(self) -> int:
        """CPU threads the model runs on (applied before each job)."""
        return self.threads_spin.value()

    def set_threads(self, threads: int) -> None:
        """Run the next jobs on ``threads`` CPU threads (clipped to 1..the cores available)."""
        self.threads_spin.setValue(int(threads))

    def set_model(self, model: Any, checkpoint: str | None = None, device: str | None = None) -> None:
        """Choose a model source by name, or use a built SEEM model object directly."""
        if device is not None:
            self.device_combo.setCurrentIndex([d.lower() for d in models.DEVICES].index(device.lower()))
        if checkpoint is not None:
            self.checkpoint_edit.setText(str(checkpoint))
        if isinstance(model, str):
            index = self.model_combo.findText(model)
            if index < 0:
                raise PluginError(f"unknown model {model!r}; available: {', '.join(models.available_models())}")
            self.model_combo.setCurrentIndex(index)
            self._on_model_changed()
        else:
            self.controller.use_model(model)
            self.weights_label.setText("model: given from Python")

    def refresh_models(self, select: str | None = None) -> None:
        """Re-list the model menu after :func:`~napari_seem.plugin.models.register_model` (e.g. a
        fine-tuned checkpoint) and optionally choose ``select``."""
        self._fill_model_combo()
        if select is not None:
            self.set_model(select)

    # ------------------------------------------------------------------ reactions
    def _fill_model_combo(self) -> None:
        """List every registered model source (keeping the current choice when it still exists)."""
        current = self.model_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for name, source in models.available_models().items():
            self.model_combo.addItem(name)
            self.model_combo.setItemData(self.model_combo.count() - 1, source.description, Qt.ItemDataRole.ToolTipRole)
        if current and self.model_combo.findText(current) >= 0:
            self.model_combo.setCurrentIndex(self.model_combo.findText(current))
        self.model_combo.blockSignals(False)

    def _on_model_chosen(self, *args) -> None:
        """A model was picked (by the user, a script or the fine-tuning widget): take it, give "find by"
        the model's default unless the user chose it, and say at once if it cannot be loaded."""
        self._on_model_changed()
        if not self._find_by_chosen:
            self._setting_find_by = True
            try:
                self.everything_combo.setCurrentText(default_find_by(self.model_combo.currentText()))
            finally:
                self._setting_find_by = False
        source = models.available_models().get(self.model_combo.currentText())
        problem = source.problem() if source is not None else None
        if problem:
            self._warn(f"SEEM: {problem}")

    def _on_find_by_changed(self, *args) -> None:
        """Any change of "find by" not made by :meth:`_on_model_chosen` is the user's choice, kept from
        then on, whatever model comes next."""
        if not self._setting_find_by:
            self._find_by_chosen = True

    def _on_model_changed(self, *args) -> None:
        name = self.model_combo.currentText()
        source = models.available_models().get(name)
        takes_file = source is not None and source.checkpoint != "none"
        self.checkpoint_edit.setEnabled(takes_file)
        self.browse_button.setEnabled(takes_file)
        device = models.DEVICES[self.device_combo.currentIndex()]
        self.controller.set_model(name, self.checkpoint_edit.text() if takes_file else None, device)
        ready = self.controller.model_ready
        problem = source.problem() if source is not None and not ready else None
        self.weights_label.setText(f"weights: {self.controller.weights}" if ready else
                                   f"not available: {problem}" if problem else "weights: loaded on first use")

    def _on_threads_changed(self, value: int) -> None:
        self.controller.threads = int(value)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "SEEM checkpoint", "", "PyTorch checkpoints (*.pt *.pth);;All (*)")
        if path:
            self.checkpoint_edit.setText(path)
            self._on_model_changed()
