"""One undo step per job: every labels change a job writes, reverted together by one Ctrl-Z.

A propagation or a segment-everything over many planes writes one frame or plane at a time, on the
GUI thread, as the worker yields them (so the user sees the progress). napari's
``Labels.block_history()`` groups the changes made while it is open into one undo item; an
:class:`UndoGroup` holds it open from the job's start to its end (done, cancelled or failed), so the
frames written so far are always on screen and, once the job ends, undo as one step.

Layers without ``block_history`` (older napari, duck-typed test layers) keep one step per write.
No Qt and no torch here.
"""

from __future__ import annotations

from typing import Any


class UndoGroup:
    """Groups the undo history of ``labels`` from construction until :meth:`close`."""

    def __init__(self, labels: Any) -> None:
        self.labels = labels
        block = getattr(labels, "block_history", None)
        self._context = block() if callable(block) else None
        if self._context is not None:
            self._context.__enter__()

    @property
    def grouping(self) -> bool:
        """Whether the writes are being grouped (False once closed, or for layers that cannot)."""
        return self._context is not None

    def close(self) -> None:
        """Commit the grouped writes as one undo step (idempotent)."""
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(None, None, None)
