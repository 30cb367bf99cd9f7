"""From inputs and options to jobs: one job per input file, split into chunks of planes on request.

Splitting (``planes_per_task``) applies to stacks of *independent* planes (``segment``,
``everything``): the plane count comes from the TIFF header, read here. A file whose header cannot
be read becomes one task, which then reports why it cannot be read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from .inputs import count_planes, output_names
from .models import ModelSpec
from .runner import Job
from .tasks import Options, PropagateOptions, Task
from .writing import FORMATS


def plan_jobs(
    inputs: Sequence[Path],
    out_dir: str | Path,
    fmt: str,
    model: ModelSpec,
    options: Sequence[Options],
    planes_per_task: int | None = None,
    skip_existing: bool = False,
) -> tuple[list[Job], list[Path]]:
    """Jobs for ``inputs`` (``options[i]`` for input i) writing ``<stem>_labels.<fmt>`` in
    ``out_dir`` (created); and the inputs skipped because their output exists (``skip_existing``)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if planes_per_task is not None and planes_per_task < 1:
        raise ValueError(f"planes per task must be >= 1, got {planes_per_task}")
    if len(options) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but {len(options)} option sets")
    out_dir = Path(os.path.abspath(out_dir))  # workers may run in another working directory
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs, skipped = [], []
    for source, name, opts in zip(inputs, output_names(inputs, FORMATS[fmt]), options):
        target = out_dir / name
        if skip_existing and target.exists():
            skipped.append(source)
            continue
        whole = Task(str(source), str(target), fmt, model, opts)
        jobs.append(Job(whole, _chunks(whole, planes_per_task)))
    return jobs, skipped


def _chunks(whole: Task, planes_per_task: int | None) -> tuple[Task, ...]:
    """Chunk tasks of ``whole`` (none if it stays one task)."""
    if planes_per_task is None or isinstance(whole.options, PropagateOptions):
        return ()
    total = count_planes(whole.source)
    if total is None or total <= planes_per_task:
        return ()
    return tuple(Task(whole.source, whole.target, whole.fmt, whole.model, whole.options,
                      (start, min(start + planes_per_task, total)))
                 for start in range(0, total, planes_per_task))
