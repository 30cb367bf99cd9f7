"""The SEEM fine-tuning dock widget: train on your own labels, then segment with the result at once.

Open it from *Plugins > napari-seem > SEEM fine-tuning*. It takes an image layer and a labels layer
(every plane of a stack that has labels is one training image; planes without labels are skipped),
or an images folder and a labels folder of TIFFs. It starts from the embedded default model, from a checkpoint
file (a napari-seem checkpoint, or an official SEEM one with its model), or from random weights,
and trains with :func:`napari_seem.training.train` in a worker thread, with a progress bar and a
Stop button (stopping saves the model trained so far). The result is kept in the user models
folder (:mod:`napari_seem.user_models`; also when an output file is chosen, as a copy), so it is in
the segmentation widget's model menu as ``fine-tuned: <name>`` now and after napari restarts, and
chosen and loaded there if that widget is open. *Your fine-tuned models* lists the kept models, to
remove one (or to add a napari-seem checkpoint from elsewhere).

The Qt-free parts are :mod:`.training_pairs` (layers and folders -> training pairs) and
:mod:`.finetune` (settings -> the training config); torch is imported only when training starts.
"""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path
from typing import Any

from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEventLoop, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_seem import user_models

from . import models
from .controller import PluginError
from .finetune import FinetuneResult, FinetuneSettings, default_output, plan_training, staged_output, train_and_keep
from .training_pairs import TrainingPairs, describe_pairs, folder_pairs, layer_pairs
from .widget import LayerCombo, SeemWidget, _Failure, _group, _row, error_message

logger = logging.getLogger(__name__)

DATA_SOURCES = {"layers": "image + labels layers", "folders": "folders of TIFFs (images, labels)"}
STARTS = {"default": "embedded default (default_tiny, trained)", "checkpoint": "checkpoint file",
          "random": "random weights (default_tiny, from scratch)"}
OWN_CONFIG = "napari-seem checkpoint (its own model)"
OFFICIAL_VARIANTS = ("focalt_v1", "focall_v1", "focalt_v0", "focall_v0")


def confirm(parent: QWidget | None, title: str, question: str) -> bool:
    """Ask the user yes or no (tests replace this)."""
    buttons = QMessageBox.StandardButton
    return QMessageBox.question(parent, title, question, buttons.Yes | buttons.No, buttons.No) == buttons.Yes


def _call_guarded(function, *args) -> Any:
    """Run ``function`` in the worker; an exception comes back as a :class:`_Failure` (shown as a
    plain message on the GUI thread) instead of napari's traceback notification."""
    try:
        return function(*args)
    except Exception as err:  # noqa: BLE001 - every failure is reported to the user
        return _Failure(err, traceback.format_exc())


class SeemTrainWidget(QWidget):
    """The fine-tuning dock widget for ``napari_viewer`` (see the module docstring)."""

    progressed = Signal(object)  # a TrainProgress after every step (emitted from the worker thread)
    training_finished = Signal(str)  # "done", "stopped" or "failed"

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self.last_error: Exception | None = None
        self.last_checkpoint: Path | None = None
        self.last_model_name: str | None = None
        self._stop = threading.Event()
        self._progress: progress | None = None
        self._build_ui()
        self.progressed.connect(self._on_progress)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.reordered):
            event.connect(self._refresh_layers)
        self.destroyed.connect(_disconnector(self.viewer, self._refresh_layers))
        self._refresh_layers()
        self.refresh_user_models()
        self._update_enabled()

    # ================================================================== UI
    def _build_ui(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for group in (self._data_group(), self._model_group(), self._training_group(), self._kept_group()):
            layout.addWidget(group)
        self.status_label = QLabel("ready")
        self.status_label.setWordWrap(True)
        self.progress_bar = QProgressBar()
        self.progress_bar.setVisible(False)
        layout.addWidget(self.status_label)
        layout.addWidget(self.progress_bar)
        layout.addStretch(1)

    def _data_group(self):
        box, form = _group("Training data")
        self.source_combo = QComboBox()
        self.source_combo.addItems(list(DATA_SOURCES.values()))
        self.image_combo = LayerCombo(Image)
        self.labels_combo = LayerCombo(Labels)
        self.channel_axis_combo = QComboBox()
        self.channels_edit = QLineEdit()
        self.channels_edit.setPlaceholderText("all (up to 3), or e.g. 0 or 0,2")
        self.images_dir_edit, self.images_browse = QLineEdit(), QPushButton("Browse…")
        self.labels_dir_edit, self.labels_browse = QLineEdit(), QPushButton("Browse…")
        self.images_dir_edit.setPlaceholderText("folder of image TIFFs")
        self.labels_dir_edit.setPlaceholderText("folder of label TIFFs (same file names)")
        self.class_edit = QLineEdit("object")
        self.class_edit.setToolTip("what the objects are (e.g. nucleus): the name text prompts and "
                                   "segment-everything will use")
        form.addRow("from", self.source_combo)
        form.addRow("image", self.image_combo)
        form.addRow("labels", self.labels_combo)
        form.addRow("channel axis", _row(self.channel_axis_combo, self.channels_edit))
        form.addRow("images", _row(self.images_dir_edit, self.images_browse))
        form.addRow("labels dir", _row(self.labels_dir_edit, self.labels_browse))
        form.addRow("class name", self.class_edit)
        self.source_combo.currentIndexChanged.connect(self._update_enabled)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.channel_axis_combo.currentIndexChanged.connect(self._update_enabled)
        self.images_browse.clicked.connect(lambda: self._browse_folder(self.images_dir_edit, "Image TIFFs"))
        self.labels_browse.clicked.connect(lambda: self._browse_folder(self.labels_dir_edit, "Label TIFFs"))
        return box

    def _model_group(self):
        box, form = _group("Start from")
        self.start_combo = QComboBox()
        self.start_combo.addItems(list(STARTS.values()))
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("checkpoint .pt")
        self.checkpoint_browse = QPushButton("Browse…")
        self.variant_combo = QComboBox()
        self.variant_combo.addItems([OWN_CONFIG, *OFFICIAL_VARIANTS])
        self.variant_combo.setToolTip("for an official SEEM checkpoint: which model it is")
        form.addRow("model", self.start_combo)
        form.addRow("checkpoint", _row(self.checkpoint_edit, self.checkpoint_browse))
        form.addRow("checkpoint is", self.variant_combo)
        self.start_combo.currentIndexChanged.connect(self._update_enabled)
        self.checkpoint_browse.clicked.connect(self._browse_checkpoint)
        return box

    def _training_group(self):
        box, form = _group("Training")
        self.steps_spin = _spin(1, 1_000_000, 200)
        self.time_spin = QDoubleSpinBox()
        self.time_spin.setRange(0.0, 10_000.0)
        self.time_spin.setSuffix(" min")
        self.time_spin.setSpecialValueText("none")
        self.size_spin = _spin(32, 4096, 512)
        self.size_spin.setToolTip("long side the images are resized to, as the segmentation widget does (512)")
        self.batch_spin = _spin(1, 64, 2)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("optional: an extra copy (.pt)")
        self.output_edit.setToolTip("an extra copy of the fine-tuned checkpoint; without one it is kept only in "
                                    f"your models folder ({user_models.models_dir()})")
        self.output_browse = QPushButton("Browse…")
        self.train_button = QPushButton("Train")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("stop after the current step and save the model trained so far")
        form.addRow("steps", self.steps_spin)
        form.addRow("time limit", self.time_spin)
        form.addRow("image size", self.size_spin)
        form.addRow("batch size", self.batch_spin)
        form.addRow("save as", _row(self.output_edit, self.output_browse))
        form.addRow(_row(self.train_button, self.stop_button))
        self.output_browse.clicked.connect(self._browse_output)
        self.train_button.clicked.connect(lambda: self.train())
        self.stop_button.clicked.connect(self.stop)
        return box

    def _kept_group(self):
        box, form = _group("Your fine-tuned models")
        self.user_models_combo = QComboBox()
        self.user_models_combo.setToolTip("kept in your models folder and listed in the segmentation widget's "
                                          "model menu as 'fine-tuned: <name>'")
        self.add_model_button = QPushButton("Add…")
        self.add_model_button.setToolTip("keep a copy of a napari-seem checkpoint from elsewhere")
        self.remove_model_button = QPushButton("Remove")
        self.remove_model_button.setToolTip("delete the chosen model from your models folder")
        self.models_folder_label = QLabel()
        self.models_folder_label.setWordWrap(True)
        form.addRow("model", self.user_models_combo)
        form.addRow(_row(self.add_model_button, self.remove_model_button))
        form.addRow(self.models_folder_label)
        self.add_model_button.clicked.connect(self._browse_add_model)
        self.remove_model_button.clicked.connect(lambda: self.remove_user_model())
        return box

    # ================================================================== settings
    @property
    def data_source(self) -> str:
        return list(DATA_SOURCES)[self.source_combo.currentIndex()]

    @property
    def start(self) -> str:
        return list(STARTS)[self.start_combo.currentIndex()]

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def set_start(self, start: str, checkpoint: str | Path | None = None, variant: str | None = None) -> None:
        """Choose the starting model: ``"default"``, ``"checkpoint"`` (with its file) or ``"random"``."""
        if start not in STARTS:
            raise PluginError(f"unknown starting model {start!r}; choose one of {', '.join(STARTS)}")
        self.start_combo.setCurrentIndex(list(STARTS).index(start))
        if checkpoint is not None:
            self.checkpoint_edit.setText(str(checkpoint))
        self.variant_combo.setCurrentText(variant or OWN_CONFIG)

    def settings(self) -> FinetuneSettings:
        """The settings as chosen in the widget."""
        variant = self.variant_combo.currentText()
        output = self.output_edit.text().strip() or staged_output(self._data_stem())
        return FinetuneSettings(
            output=output, start=self.start, checkpoint=self.checkpoint_edit.text().strip() or None,
            variant=None if variant == OWN_CONFIG else variant, class_name=self.class_edit.text(),
            steps=self.steps_spin.value(), time_limit_min=self.time_spin.value(),
            batch_size=self.batch_spin.value(), target_size=self.size_spin.value(),
        )

    def training_pairs(self) -> TrainingPairs:
        """The labelled planes to train on, from the chosen layers or folders (or PluginError)."""
        if self.data_source == "folders":
            return folder_pairs(self.images_dir_edit.text().strip() or ".", self.labels_dir_edit.text().strip() or ".")
        image = self.image_combo.layer()
        if image is None:
            raise PluginError("no image: add an image layer and choose it under 'Training data'")
        return layer_pairs(image, self.labels_combo.layer(), self.channel_axis_combo.currentData(),
                           self.channels_edit.text())

    def _data_stem(self) -> str:
        if self.data_source == "folders":
            return Path(self.images_dir_edit.text().strip() or "images").name
        image = self.image_combo.layer()
        return image.name if image is not None else "model"

    # ================================================================== training
    def train(self, wait: bool = False):
        """Start training with the widget's settings; returns the worker (``wait``: block until done)."""
        self.last_error = None
        try:
            if self.busy:
                raise PluginError("training is running already: wait for it or press Stop")
            pairs = self.training_pairs()
            settings = self.settings()
            config = plan_training(pairs, settings, self._describe_data(pairs), self._step_done)
        except Exception as err:  # noqa: BLE001 - shown as a message, never a traceback dialog
            self._fail(err)
            if wait:
                raise
            return None
        worker = self._start(config, settings, pairs)
        if wait:
            self._wait(worker)
            if self.last_error is not None:
                raise self.last_error
        return worker

    def stop(self) -> None:
        """Stop after the current step; the model trained so far is saved."""
        if self.busy:
            self._stop.set()
            self.status_label.setText("stopping after the current step…")

    def _start(self, config, settings: FinetuneSettings, pairs: TrainingPairs):
        worker = create_worker(_call_guarded, train_and_keep, config, settings, _start_thread=False,
                               _ignore_errors=True)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._stop.clear()
        self._progress = progress(total=config.steps, desc="SEEM: fine-tuning")
        self.progress_bar.setRange(0, config.steps)
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        self.status_label.setText(f"preparing {describe_pairs(pairs)}…")
        self._update_enabled()
        worker.start()
        return worker

    def _step_done(self, step_progress) -> bool:
        """The training callback (worker thread): report the step; ``False`` stops training."""
        try:
            self.progressed.emit(step_progress)
        except RuntimeError:  # the widget was closed: stop (the model so far is still saved)
            return False
        return not self._stop.is_set()

    def _on_progress(self, step_progress) -> None:
        self.progress_bar.setValue(step_progress.step)
        if self._progress is not None:
            self._progress.update(step_progress.step - self._progress.n)
        if not self._stop.is_set():
            loss = step_progress.losses.get("loss", float("nan"))
            self.status_label.setText(f"step {step_progress.step}/{step_progress.total}: loss {loss:.3f} "
                                      f"(mean {step_progress.loss_mean:.3f}), {step_progress.elapsed_s:.0f} s")

    def _on_returned(self, value: Any) -> None:
        if isinstance(value, _Failure):
            logger.debug("SEEM fine-tuning failed:\n%s", value.trace)
            self._fail(value.error)
            return
        self._use_checkpoint(value)

    def _use_checkpoint(self, result: FinetuneResult) -> None:
        """Put the new model in the segmentation widget's model menu (and load it there): the kept
        one (listed from the user models folder), else the file for this session only."""
        from napari_seem.loading import read_payload

        path = result.checkpoint
        try:
            metrics = read_payload(path).get("metrics", {})
        except Exception as err:  # noqa: BLE001 - e.g. the file was moved away meanwhile
            self._fail(err)
            return
        if result.kept is not None:
            name = result.kept.label
            where = f"kept in your models ({result.kept.path.parent})"
        else:
            name = f"fine-tuned: {path.name}"
            models.register_model(models.trained_source(name, path), replace=True)
            where = "in the model menu for this session only"
            if result.keep_error:
                where += f": it could not be kept in your models folder ({result.keep_error})"
        self.last_checkpoint, self.last_model_name = path, name
        self.refresh_user_models(select=name)
        segmentation = self._segmentation_widget()
        loaded = ""
        if segmentation is not None:
            segmentation.refresh_models(select=None if segmentation.busy else name)
            if not segmentation.busy:
                segmentation.load_model()
                loaded = " and is loading in the segmentation widget"
        steps, reason = metrics.get("steps"), metrics.get("stop_reason", "")
        self.status_label.setText(f"saved {path} ({steps} steps, {reason}) as '{name}', {where}")
        show_info(f"SEEM: fine-tuned model saved to {path} ({steps} steps, {reason}); it is in the model menu "
                  f"as '{name}'{loaded}; {where}")

    # ================================================================== kept models
    def refresh_user_models(self, select: str | None = None) -> None:
        """Re-list *Your fine-tuned models* from the user models folder (``select``: a menu label)."""
        current = select or self.user_models_combo.currentData()
        self.user_models_combo.clear()
        try:
            kept = user_models.list_user_models()
        except OSError as err:
            kept = []
            logger.debug("cannot list the user models folder: %s", err)
        for model in kept:
            self.user_models_combo.addItem(model.name, model.label)
            self.user_models_combo.setItemData(self.user_models_combo.count() - 1, model.describe(),
                                               Qt.ItemDataRole.ToolTipRole)
        index = self.user_models_combo.findData(current) if current else -1
        if index >= 0:
            self.user_models_combo.setCurrentIndex(index)
        folder = user_models.models_dir()
        self.models_folder_label.setText(f"{len(kept)} kept in {folder}" if kept else f"none yet (folder: {folder})")
        self._update_enabled()

    def remove_user_model(self, name: str | None = None, ask: bool = True) -> Path | None:
        """Delete a kept model (default: the one chosen under *Your fine-tuned models*) from the
        user models folder and the model menus, after asking (``ask``); returns the file removed."""
        label = name if name is not None else self.user_models_combo.currentData()
        if not label:
            return None
        label = user_models.LABEL_PREFIX + str(label).removeprefix(user_models.LABEL_PREFIX)
        segmentation = self._segmentation_widget()
        in_use = segmentation is not None and segmentation.model_combo.currentText() == label
        try:
            if in_use and segmentation.busy:
                raise PluginError(f"'{label}' is in use in the segmentation widget: wait until it finishes")
            model = user_models.find_user_model(label)
            if ask and not confirm(self, "Remove fine-tuned model",
                                   f"Delete '{model.name}' ({model.path}) for good?"):
                return None
            path = models.remove_user_model(label)
        except Exception as err:  # noqa: BLE001 - shown as a message
            self._fail(err)
            return None
        if segmentation is not None:
            segmentation.refresh_models(select=models.EMBEDDED_DEFAULT if in_use else None)
        self.refresh_user_models()
        self.status_label.setText(f"removed '{label}' ({path})")
        show_info(f"SEEM: removed the fine-tuned model '{label}' ({path})")
        return path

    def add_user_model(self, path: str | Path, name: str | None = None):
        """Keep a copy of the napari-seem checkpoint ``path`` in the user models folder (listed in
        the model menus at once); returns the kept :class:`~napari_seem.user_models.UserModel`."""
        try:
            kept = user_models.add_user_model(path, name)
        except Exception as err:  # noqa: BLE001 - shown as a message
            self._fail(err)
            return None
        segmentation = self._segmentation_widget()
        if segmentation is not None:
            segmentation.refresh_models()
        self.refresh_user_models(select=kept.label)
        self.status_label.setText(f"kept {path} as '{kept.label}'")
        return kept

    def _browse_add_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Keep a napari-seem checkpoint", "",
                                              "PyTorch checkpoints (*.pt *.pth);;All (*)")
        if path:
            self.add_user_model(path)

    def _on_finished(self) -> None:
        outcome = "failed" if self.last_error is not None else "stopped" if self._stop.is_set() else "done"
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        self.worker = None
        self._update_enabled()
        self.training_finished.emit(outcome)

    def _wait(self, worker) -> None:
        """Block (running the Qt event loop) until ``worker`` ends."""
        if self.worker is not worker:
            return
        loop = QEventLoop()
        self.training_finished.connect(loop.quit)
        try:
            loop.exec()
        finally:
            self.training_finished.disconnect(loop.quit)

    def _fail(self, error: Exception) -> None:
        self.last_error = error
        message = error_message(error)
        self.status_label.setText(f"error: {message}")
        show_error(f"SEEM fine-tuning: {message}")

    def _describe_data(self, pairs: TrainingPairs) -> str:
        if self.data_source == "folders":
            return f"TIFF folders {self.images_dir_edit.text().strip()} + {self.labels_dir_edit.text().strip()}"
        labels = self.labels_combo.layer()
        return f"layers {self.image_combo.layer().name!r} + {labels.name if labels else ''!r}, {describe_pairs(pairs)}"

    def _segmentation_widget(self) -> SeemWidget | None:
        """The segmentation dock widget of this viewer, if it is open."""
        for widget in self.viewer.window.dock_widgets.values():
            if isinstance(widget, SeemWidget):
                return widget
        return None

    # ================================================================== wiring
    def _refresh_layers(self, event=None) -> None:
        self.image_combo.refresh(self.viewer.layers)
        self.labels_combo.refresh(self.viewer.layers)

    def _on_image_changed(self, *args) -> None:
        image = self.image_combo.layer()
        self.channel_axis_combo.clear()
        self.channel_axis_combo.addItem("none")
        if image is not None and not getattr(image, "multiscale", False) and not image.rgb:
            for axis in range(image.ndim - 2):
                self.channel_axis_combo.addItem(f"axis {axis} ({image.data.shape[axis]})", axis)

    def _update_enabled(self, *args) -> None:
        idle = not self.busy
        layers = self.data_source == "layers"
        for widget in (self.image_combo, self.labels_combo, self.channel_axis_combo):
            widget.setEnabled(idle and layers)
        self.channels_edit.setEnabled(idle and layers and self.channel_axis_combo.currentData() is not None)
        for widget in (self.images_dir_edit, self.images_browse, self.labels_dir_edit, self.labels_browse):
            widget.setEnabled(idle and not layers)
        from_file = self.start == "checkpoint"
        for widget in (self.checkpoint_edit, self.checkpoint_browse, self.variant_combo):
            widget.setEnabled(idle and from_file)
        for widget in (self.source_combo, self.start_combo, self.class_edit, self.steps_spin, self.time_spin,
                       self.size_spin, self.batch_spin, self.output_edit, self.output_browse, self.train_button):
            widget.setEnabled(idle)
        self.stop_button.setEnabled(not idle)
        self.remove_model_button.setEnabled(self.user_models_combo.count() > 0)

    def _browse_folder(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Start from checkpoint", "",
                                              "PyTorch checkpoints (*.pt *.pth);;All (*)")
        if path:
            self.checkpoint_edit.setText(path)

    def _browse_output(self) -> None:
        suggestion = str(default_output(self._data_stem()))
        path, _ = QFileDialog.getSaveFileName(self, "Save the fine-tuned model as", suggestion,
                                              "PyTorch checkpoints (*.pt)")
        if path:
            self.output_edit.setText(path)


def _spin(low: int, high: int, value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setValue(value)
    return spin


def _disconnector(viewer, refresh):
    """A slot that disconnects the widget's layer callbacks when it is deleted."""
    def disconnect(*args) -> None:
        try:
            events = viewer.layers.events
            for event in (events.inserted, events.removed, events.reordered):
                event.disconnect(refresh)
        except (RuntimeError, AttributeError):  # the viewer is being torn down as well
            pass
    return disconnect
