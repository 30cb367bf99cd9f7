"""Batch segmentation over files and folders, on Dask distributed or in one process.

The ``napari-seem segment | everything | propagate`` commands (``cli/batch.py``), and
``napari-seem precompute`` with ``--scheduler`` or ``--workers``, build jobs
(:func:`plan_jobs`) and run them (:func:`run_jobs`): on a ``LocalCluster`` of single-threaded worker
processes on 127.0.0.1 by default, on an existing cluster with ``scheduler=ADDRESS``, or with no
Dask at all (``workers=0``, the reference the cluster runs are tested against: same outputs, bit
for bit).

What runs in parallel:

* **One task per input file**, for all commands. Each worker process loads the model once
  (:mod:`.models`) and keeps it for the tasks that follow.
* **Chunks of planes** of a stack of *independent* 2D planes (``segment``, ``everything`` with
  ``planes_per_task``): each chunk is a task writing a part, and an assembly task writes the file.
* **Not within one propagation.** Propagating through a stack is sequential (frame t is prompted
  from frame t-1's result), and the objects of a stack are decoded together (SEEM v1 splits its
  memory tokens among the objects of a decode, so splitting them into groups would change the
  masks). A stack is therefore one task; many stacks run in parallel.

Failures: bad input fails its task at once (no retry can help); any other error is retried
(``retries``) and, if it persists, reported with its file while the other tasks complete. Outputs
are written atomically (:mod:`.writing`): a crash never leaves a half-written label file under
its final name.
"""

from .inputs import BatchInputError, find_inputs
from .models import ModelSpec
from .plan import plan_jobs
from .prompts_file import ObjectSpec, PromptsFileError, load_prompts_file, parse_prompts, prompts_for_inputs
from .runner import BatchResult, Job, run_jobs, write_summary
from .tasks import EverythingOptions, PrecomputeOptions, PropagateOptions, SegmentOptions, Task

__all__ = [
    "BatchInputError",
    "BatchResult",
    "EverythingOptions",
    "Job",
    "ModelSpec",
    "ObjectSpec",
    "PrecomputeOptions",
    "PromptsFileError",
    "PropagateOptions",
    "SegmentOptions",
    "Task",
    "find_inputs",
    "load_prompts_file",
    "parse_prompts",
    "plan_jobs",
    "prompts_for_inputs",
    "run_jobs",
    "write_summary",
]
