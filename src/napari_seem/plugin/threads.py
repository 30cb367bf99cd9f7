"""How many CPU threads the model runs on (the widget's *threads* setting).

PyTorch splits each operation of the model over a pool of threads that wait for each other at
every step. When the cores they need are busy (napari drawing the canvas, another program, a
training run in the background), one descheduled thread holds all the others up: on a machine where
something else was busy, two threads made a click 15-40x slower (a first click took ~50 s). So the default
leaves room: half the cores this process may use, at least 1 and at most 8 (on CPUs, the small
models gain little from more). On one to three cores that is one thread, which is never much slower
than a contended pool and never stalls. The user can raise it on a machine that is otherwise idle.

The setting is applied in the worker thread before every job (:func:`use_threads`): torch's thread
settings belong to the thread (OpenMP) or the process that sets them, and another part of the
program (the fine-tuning widget, a script) may have changed them since. torch is imported only there.
"""

from __future__ import annotations

import os

MAX_DEFAULT_THREADS = 8


def available_cpus() -> int:
    """The cores this process may run on (its CPU affinity where the system says, e.g. in a container)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_threads(cpus: int | None = None) -> int:
    """Half of ``cpus`` (default: :func:`available_cpus`), at least 1 and at most ``MAX_DEFAULT_THREADS``
    (see the module docstring for why not all of them)."""
    cpus = available_cpus() if cpus is None else int(cpus)
    return max(1, min(MAX_DEFAULT_THREADS, cpus // 2))


def use_threads(threads: int | None) -> None:
    """Make torch run the model on ``threads`` threads from now on in this thread (``None``: leave it)."""
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != int(threads):
        torch.set_num_threads(max(1, int(threads)))
