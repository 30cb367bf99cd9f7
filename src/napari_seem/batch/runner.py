"""Run batch jobs on a Dask cluster (or in this process) and collect one summary per output file.

    jobs = [Job(task) for task in tasks]                     # or Job(whole_file, chunks) for a split stack
    result = run_jobs(jobs, scheduler=None, workers=2)       # a LocalCluster of 2 processes on 127.0.0.1
    result = run_jobs(jobs, scheduler="tcp://host:8786")     # an existing cluster
    result = run_jobs(jobs, workers=0)                       # no Dask: one task after another, here
    write_summary("out/summary.json", result, command="segment")

Every task is submitted with ``retries`` and ``pure=False`` (two runs of the same file are two
tasks); results are gathered with ``as_completed`` behind a tqdm bar. A task that still raises
after its retries is reported with its file and error, its leftovers are removed, and the other
tasks go on. A split stack's chunk tasks feed one ``assemble`` task that writes the file; if a chunk
fails, the file is reported failed and no output is written for it.

With a cluster, the input files and the output folder must be reachable at the same paths from
this process and from every worker (a shared filesystem).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .tasks import Task, assemble, failed_summary, run_task
from .writing import remove_leftovers

DEFAULT_RETRIES = 2


@dataclass(frozen=True)
class Job:
    """One output file: ``whole`` (the file's task) run as is, or, when ``chunks`` are given, its
    chunk tasks (planes in order) followed by an assembly."""

    whole: Task
    chunks: tuple[Task, ...] = ()


@dataclass
class BatchResult:
    """``summaries``: one per job, in job order; ``cluster``: where it ran; ``seconds``: wall time."""

    summaries: list[dict[str, Any]]
    cluster: str
    seconds: float
    failed: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.failed = [s for s in self.summaries if s["status"] != "ok"]


def run_jobs(
    jobs: Sequence[Job],
    scheduler: str | None = None,
    workers: int = 2,
    retries: int = DEFAULT_RETRIES,
    progress: bool = True,
) -> BatchResult:
    """Run ``jobs`` on the cluster at ``scheduler``, on a new local cluster of ``workers`` processes,
    or (``workers=0`` and no scheduler) in this process."""
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if not jobs:
        return BatchResult([], "nothing to run", 0.0)
    start = time.perf_counter()
    bar = _progress_bar(sum(_task_count(j) for j in jobs), progress)
    try:
        if scheduler is None and workers == 0:
            summaries, cluster = [_run_here(job, retries, bar) for job in jobs], "this process (no Dask)"
        else:
            with open_client(scheduler, workers) as (client, cluster):
                summaries = _run_on(client, jobs, retries, bar)
    finally:
        bar.close()
    return BatchResult(summaries, cluster, round(time.perf_counter() - start, 3))


def _task_count(job: Job) -> int:
    return len(job.chunks) + 1 if job.chunks else 1


def _progress_bar(total: int, shown: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="task", disable=not shown, dynamic_ncols=True)


@contextmanager
def open_client(scheduler: str | None, workers: int) -> Iterator[tuple[Any, str]]:
    """A ``distributed.Client`` for ``scheduler``, or for a new ``LocalCluster`` of ``workers``
    single-threaded processes on 127.0.0.1 (closed on exit); and a description of it."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        with Client(scheduler, timeout="30s") as client:
            yield client, f"scheduler {scheduler} ({len(client.nthreads())} workers when the batch started)"
        return
    if workers < 1:
        raise ValueError("a local cluster needs at least one worker")
    # One thread per worker process: the model is not thread-safe and torch threads are set per task.
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, env={"OMP_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
        yield client, f"local cluster of {workers} worker processes x 1 thread on 127.0.0.1"


def _run_on(client, jobs: Sequence[Job], retries: int, bar) -> list[dict[str, Any]]:
    """Submit every task, then collect as they complete; a job's summary comes from its last task."""
    from distributed import as_completed

    final: dict[Any, int] = {}
    submitted = []
    for index, job in enumerate(jobs):
        chunks = [_submit(client, run_task, retries, task) for task in job.chunks]
        last = _submit(client, assemble, retries, job.whole, *chunks) if chunks else \
            _submit(client, run_task, retries, job.whole)
        final[last] = index
        submitted.extend([*chunks, last])
    summaries: list[dict[str, Any] | None] = [None] * len(jobs)
    for future in as_completed(submitted):
        bar.update(1)
        if future not in final:
            continue
        job = jobs[final[future]]
        if future.status == "finished":
            summaries[final[future]] = _reported(future.result(), bar)
        else:  # "error" after the retries, or "cancelled" (e.g. the scheduler went away)
            error = future.exception() if future.status == "error" else RuntimeError(f"task {future.status}")
            summaries[final[future]] = _gave_up(job, error, bar)
    return summaries


def _submit(client, function: Callable, retries: int, *args):
    name = Path(args[0].source).name
    return client.submit(function, *args, retries=retries, pure=False,
                         key=f"{function.__name__}-{name}-{uuid.uuid4().hex[:8]}")


def _run_here(job: Job, retries: int, bar) -> dict[str, Any]:
    """One job in this process, with the same retry rule as on a cluster."""
    try:
        chunks = []
        for task in job.chunks:
            chunks.append(_with_retries(run_task, retries, task))
            bar.update(1)
        summary = _with_retries(assemble, retries, job.whole, *chunks) if chunks else \
            _with_retries(run_task, retries, job.whole)
    except Exception as err:  # noqa: BLE001 - any error that survives the retries is reported, not raised
        summary = _gave_up(job, err, bar)
    else:
        summary = _reported(summary, bar)
    bar.update(1)
    return summary


def _with_retries(function: Callable, retries: int, *args) -> dict[str, Any]:
    for attempt in range(retries + 1):
        try:
            return function(*args)
        except Exception:  # noqa: BLE001 - retried as Dask would; the last failure is raised
            if attempt == retries:
                raise
    raise AssertionError("unreachable")


def _gave_up(job: Job, error: BaseException, bar) -> dict[str, Any]:
    """A job whose task raised even after its retries: clean up after it and report it."""
    if job.whole.writes_labels:
        remove_leftovers(job.whole.target)
    return _reported(failed_summary(job.whole, error), bar)


def _reported(summary: dict[str, Any], bar) -> dict[str, Any]:
    if summary["status"] != "ok":
        bar.write(f"failed: {summary['input']}: {summary['error']}", file=sys.stderr)  # stdout carries the report
    return summary


def write_summary(path: str | Path, result: BatchResult, **header: Any) -> Path:
    """The batch's summary JSON (``header`` first, then counts, then every file), written atomically."""
    path = Path(path)
    payload = {**header, "cluster": result.cluster, "seconds": result.seconds,
               "ok": len(result.summaries) - len(result.failed), "failed": len(result.failed),
               "files": result.summaries}
    temporary = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:12]}")
    temporary.write_text(json.dumps(payload, indent=2))
    os.replace(temporary, path)
    return path
