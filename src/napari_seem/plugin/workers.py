"""The segmentation widget's jobs: model work in a napari worker thread, with progress and Cancel.

A job is started on the GUI thread with a *body* (a generator run in the worker) and an ``on_item``
callback: every item the body yields is handed to ``on_item`` on the GUI thread, where it is written
into the layers. So a propagation shows each frame as it is computed, and Cancel (which stops the
worker after the step in progress) leaves every finished frame written and nothing half-written.
An exception in the body comes back as a :class:`Failure` and is shown as a plain message. The
labels a job writes become one undo step (:class:`~.undo.UndoGroup`), also when it is cancelled.

:class:`Jobs` is a mixin of :class:`~.widget.SeemWidget`; it uses the widget's ``controller``,
``status_label``, ``weights_label``, ``progress_bar``, ``job_finished`` signal, ``_fail`` and
``_update_enabled``.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from napari.qt.threading import create_worker
from napari.utils import progress
from qtpy.QtCore import QEventLoop

from napari_seem.io.checkpoints import CheckpointUnavailable, ChecksumMismatch

from .controller import PluginError, Progress, SeemController
from .undo import UndoGroup

logger = logging.getLogger(__name__)

# User-facing error types: shown as their message. Anything else also names its type.
EXPECTED_ERRORS = (PluginError, ValueError, KeyError, OSError, CheckpointUnavailable, ChecksumMismatch)


@dataclass
class Status:
    """A progress message yielded by a worker (shown in the widget, not written anywhere)."""

    text: str


@dataclass
class Failure:
    """An exception raised in a worker, returned to the GUI thread to be shown as a message."""

    error: Exception
    trace: str


def guarded(body: Callable[..., Iterator], *args) -> Iterator:
    """Run a worker body; an exception becomes a returned :class:`Failure` (shown by the widget)
    instead of napari's traceback notification, and a ``RuntimeError`` is not mistaken by the worker
    for a deleted worker and swallowed."""
    try:
        return (yield from body(*args))
    except Exception as err:  # noqa: BLE001 - every failure is reported to the user on the GUI thread
        return Failure(err, traceback.format_exc())


def error_message(error: BaseException) -> str:
    """A one-line message for the user: the message alone for errors they can fix."""
    text = str(error).strip() or type(error).__name__
    return text if isinstance(error, EXPECTED_ERRORS) else f"{type(error).__name__}: {text}"


# ====================================================================== worker bodies (worker thread)
# Each goes through ``controller.ensure_model``, which applies the threads setting first.
def load_body(controller: SeemController) -> Iterator[Status]:
    controller.ensure_model()
    yield Status(f"model ready: {controller.weights}")


def plane_body(controller: SeemController, job) -> Iterator:
    if not controller.model_ready:
        yield Status("loading the model…")
    controller.ensure_model()
    yield Status("encoding the plane and decoding the prompts…")
    yield controller.run_plane(job)


def everything_body(controller: SeemController, job) -> Iterator:
    if not controller.model_ready:
        yield Status("loading the model…")
    yield from controller.run_everything(job)


def propagation_body(controller: SeemController, job) -> Iterator:
    if not controller.model_ready:
        yield Status("loading the model…")
    yield from controller.run_propagation(job)


# ====================================================================== the widget's side (GUI thread)
class Jobs:
    """Starting, following, cancelling and waiting for the widget's one job at a time."""

    def _init_jobs(self) -> None:
        self.worker = None
        self.last_error: Exception | None = None
        self._cancelled = False
        self._progress: progress | None = None
        self._undo_group: UndoGroup | None = None  # the running job's writes: one undo step
        self._bar_follows_steps = False

    @property
    def busy(self) -> bool:
        return self.worker is not None

    def cancel(self) -> None:
        """Stop the running job after the step in progress (completed frames stay written)."""
        if self.worker is not None:
            self.worker.quit()
            self.status_label.setText("cancelling after the current step…")

    def _action(self, name: str, start: Callable[[], Any], wait: bool):
        """Start an action; a problem found before the worker starts is shown (and raised with ``wait``)."""
        self.last_error = None
        try:
            if self.busy:
                raise PluginError("SEEM is busy with another job: wait for it or press Cancel")
            worker = start()
        except Exception as err:  # noqa: BLE001 - shown as a message, never a traceback dialog
            logger.debug("SEEM action %s could not start", name, exc_info=True)
            self._fail(err)
            if wait:
                raise
            return None
        if wait:
            self._wait(worker)
            if self.last_error is not None:
                raise self.last_error
        return worker

    def _start(self, description: str, body: Callable[..., Iterator], *args, on_item: Callable[[Any], None],
               total: int = 0, history: Any = None):
        """Run ``body(*args)`` in a worker; each yielded item goes to ``on_item`` on the GUI thread.
        ``history``: the labels layer the job writes; all its writes become one undo step."""
        worker = create_worker(guarded, body, *args, _start_thread=False, _ignore_errors=True)
        self._progress = progress(total=total or None, desc=f"SEEM: {description}")
        worker.yielded.connect(lambda item: self._on_yielded(item, on_item))
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._cancelled = False
        self.progress_bar.setRange(0, total)  # total 0: a busy indicator
        self._bar_follows_steps = total <= 1
        self.progress_bar.setValue(0)
        self.progress_bar.setVisible(True)
        self.status_label.setText(f"{description}…")
        self._update_enabled()
        self._undo_group = UndoGroup(history) if history is not None else None
        worker.start()
        return worker

    def _on_yielded(self, item: Any, on_item: Callable[[Any], None]) -> None:
        if isinstance(item, Status):
            self._show_status(item)
            return
        if isinstance(item, Progress):  # a step inside one item (a tile of a large plane)
            self.status_label.setText(item.text)
            if self._bar_follows_steps:  # a one-item job: the bar follows its steps
                self.progress_bar.setRange(0, item.total)
                self.progress_bar.setValue(item.done)
            return
        try:
            on_item(item)
        except Exception as err:  # noqa: BLE001 - a failed write stops the job and is reported
            logger.debug("writing a SEEM result failed", exc_info=True)
            self._fail(err)
            if self.worker is not None:
                self.worker.quit()
            return
        if self.progress_bar.maximum() > 0:
            self.progress_bar.setValue(self.progress_bar.value() + 1)
            if self._progress is not None:
                self._progress.update(1)

    def _show_status(self, item: Status) -> None:
        self.status_label.setText(item.text)
        if self.controller.weights:
            self.weights_label.setText(f"weights: {self.controller.weights}")

    def _on_returned(self, value: Any) -> None:
        if isinstance(value, Failure):
            logger.debug("SEEM job failed:\n%s", value.trace)
            self._fail(value.error)

    def _on_aborted(self) -> None:
        self._cancelled = True

    def _on_finished(self) -> None:
        outcome = "failed" if self.last_error is not None else "cancelled" if self._cancelled else "done"
        if outcome == "cancelled":
            self.status_label.setText("cancelled: the frames and planes finished before are written")
        elif outcome == "done" and self.status_label.text().endswith("…"):
            self.status_label.setText("done")
        if self.controller.weights:
            self.weights_label.setText(f"weights: {self.controller.weights}")
        if self._progress is not None:
            self._progress.close()
            self._progress = None
        if self._undo_group is not None:  # done, cancelled or failed: what was written is one undo step
            self._undo_group.close()
            self._undo_group = None
        self.worker = None
        self.progress_bar.setVisible(False)
        self._update_enabled()
        self.job_finished.emit(outcome)

    def _wait(self, worker) -> None:
        """Block (running the Qt event loop, so yielded results are written) until ``worker`` ends."""
        if self.worker is not worker:
            return
        loop = QEventLoop()
        self.job_finished.connect(loop.quit)
        try:
            loop.exec()
        finally:
            self.job_finished.disconnect(loop.quit)
