"""``napari-seem segment | everything | propagate``: batch commands over files and folders.

    napari-seem segment images/ --prompts prompts.json --out labels/ --checkpoint model.pt
    napari-seem everything images/ --vocabulary "nucleus,cell" --out labels/ --format zarr
    napari-seem propagate movie.tif --prompts prompts.json --axis 0 --direction both --out labels/
    ... --scheduler tcp://10.0.0.5:8786     # an existing Dask cluster (shared filesystem)
    ... --workers 4                         # a local cluster of 4 processes (default: one per core)
    ... --local                             # no Dask: one file after another in this process

Each input ``<stem>.tif|.png`` gives ``OUT/<stem>_labels.tif`` (or ``.zarr``), and ``OUT/summary.json``
lists every file with its objects, or its error. The exit status is 1 if any file failed. The
prompts file format is described in ``napari_seem.batch.prompts_file``.

``napari-seem precompute`` (``cli/precompute.py``) runs through the same runner when given
``--scheduler`` or ``--workers`` (:func:`run_precompute_batch`); without them it runs in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any


def add_batch_parsers(sub) -> None:
    """The batch commands, on the main parser's subparsers ``sub``."""
    segment = sub.add_parser("segment", help="segment the objects of a prompts file in many images (Dask)")
    _add_inputs(segment, "INPUTS", "TIFF/PNG files or folders of them; stacks are independent planes")
    segment.add_argument("--prompts", required=True, help="JSON prompts file (see napari_seem.batch.prompts_file)")
    segment.add_argument("--vocabulary", type=_names, default=(), help="comma-separated class names to label "
                         "the objects with in the summary (optional)")
    _add_planes_per_task(segment)
    segment.set_defaults(func=run_segment)

    everything = sub.add_parser("everything", help="segment everything of a vocabulary in many images (Dask)")
    _add_inputs(everything, "INPUTS", "TIFF/PNG files or folders of them; stacks are independent planes")
    everything.add_argument("--vocabulary", type=_names, required=True,
                            help='comma-separated class names, e.g. "nucleus,cell"')
    everything.add_argument("--object-threshold", type=_fraction, default=0.4,
                            help="least class probability, 0..1 (default 0.4)")
    everything.add_argument("--overlap-threshold", type=_fraction, default=0.8,
                            help="least kept share of a segment, 0..1 (default 0.8)")
    everything.add_argument("--mask-threshold", type=_open_fraction, default=0.5,
                            help="mask probability threshold, between 0 and 1 (default 0.5)")
    everything.add_argument("--min-area", type=_count, default=0, help="drop segments under this many pixels")
    everything.add_argument("--strategy", choices=("auto", "queries", "points"), default="auto",
                            help="queries: SEEM's object queries (the thresholds above); points: a 16 x 16 grid of "
                                 "clicks, stable masks kept; auto (default): points for the embedded default "
                                 "model and models napari-seem trained, whose object queries are weak, queries "
                                 "for official checkpoints")
    _add_planes_per_task(everything)
    everything.set_defaults(func=run_everything)

    propagate = sub.add_parser("propagate", help="carry prompted objects through stacks, one task per stack (Dask)")
    _add_inputs(propagate, "STACKS", "TIFF stacks (T, H, W) or (T, H, W, 3), or folders of them")
    propagate.add_argument("--prompts", required=True,
                           help='JSON prompts file; each object\'s "frame" is where it is given')
    propagate.add_argument("--axis", type=int, default=0, help="the propagation axis of the stack (default 0)")
    propagate.add_argument("--direction", choices=("forward", "backward", "both"), default="both",
                           help="from each object's last prompted frame (default both)")
    propagate.add_argument("--lost-iou", type=float,
                           help="an object whose mask overlaps its previous one less than this is lost "
                                "(default: VideoSession's lost_iou; 0: never)")
    propagate.add_argument("--lost-score", type=float,
                           help="an object whose mask stability is below this is lost "
                                "(default: VideoSession's lost_score; 0: never)")
    propagate.add_argument("--stack-kind", choices=("time", "z"), default="time",
                           help="time: a time-lapse; z: a z-stack, where each object ends where its nucleus "
                                "fades (default time)")
    propagate.set_defaults(func=run_propagate)


def _add_inputs(parser: argparse.ArgumentParser, metavar: str, help_text: str) -> None:
    parser.add_argument("inputs", nargs="+", metavar=metavar, help=help_text)
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--format", choices=("tif", "zarr"), default="tif", help="label file format (default tif)")
    parser.add_argument("--checkpoint", help="a trained or official checkpoint (official: with --variant); "
                        "default: the embedded default model")
    parser.add_argument("--variant", help="model preset of an official checkpoint (default focalt_v1), or alone "
                        "for RANDOM weights of that preset (e.g. tiny, for trials)")
    parser.add_argument("--target-size", type=int, default=512, help="model input size, long side (default 512)")
    parser.add_argument("--threads", type=int, help="torch threads per task (default: 1 per Dask worker; "
                        "torch's default with --local)")
    parser.add_argument("--device", default="cpu", help="torch device of every task: cpu, cuda, cuda:1, mps "
                        "(default: cpu)")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    cluster.add_argument("--workers", type=int, help="processes of the local cluster (default: one per CPU "
                         "core); 0 = no Dask")
    cluster.add_argument("--local", action="store_true", help="no Dask: run the files one after another here")
    parser.add_argument("--retries", type=int, default=2, help="retries of a task that fails unexpectedly (default 2)")
    parser.add_argument("--skip-existing", action="store_true", help="skip inputs whose output exists (resume a batch)")
    parser.add_argument("--summary", help="summary JSON (default: OUT/summary.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_planes_per_task(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--planes-per-task", type=int, help="split stacks into tasks of this many planes "
                        "(default: one task per file)")


# Option types: a bad value is refused while parsing, before torch or a model loads (the engine
# checks the same rules again for its Python callers).
def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(","))
    if not any(names) or not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated class names, got {text!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"class names must be unique, repeated: {', '.join(repeated)}")
    return names


def _number(text: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, "
                                         f"got {text!r}") from None


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _open_fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (excluded), got {text}")
    return value


def _count(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def run_segment(args: argparse.Namespace) -> dict[str, Any]:
    from napari_seem.batch import SegmentOptions, find_inputs

    inputs = find_inputs(args.inputs)
    objects = _objects(args.prompts, inputs)
    return _run(args, inputs, [SegmentOptions(tuple(o), args.vocabulary) for o in objects], args.planes_per_task)


def run_everything(args: argparse.Namespace) -> dict[str, Any]:
    from napari_seem.batch import EverythingOptions, find_inputs

    inputs = find_inputs(args.inputs)
    options = EverythingOptions(args.vocabulary, args.object_threshold, args.overlap_threshold,
                                args.mask_threshold, args.min_area, everything_strategy(args.strategy, args))
    return _run(args, inputs, [options] * len(inputs), args.planes_per_task)


def everything_strategy(choice: str, args: argparse.Namespace) -> str:
    """``"auto"`` resolved: the point grid for napari-seem's own model family (the embedded default,
    or a ``--checkpoint`` that napari-seem trained, e.g. fine-tuned from it: their object queries are
    weak), the object queries for official checkpoints (``--variant``, or a file without a
    napari-seem config)."""
    if choice != "auto":
        return choice
    if args.variant is not None:
        return "queries"
    if args.checkpoint is None:
        return "points"
    from pathlib import Path

    from napari_seem.training.checkpoint import CheckpointError, is_trained_checkpoint

    try:
        return "points" if Path(args.checkpoint).is_file() and is_trained_checkpoint(args.checkpoint) else "queries"
    except CheckpointError:  # loading the model says what is wrong with the file
        return "queries"


def run_propagate(args: argparse.Namespace) -> dict[str, Any]:
    from napari_seem.batch import PropagateOptions, find_inputs

    inputs = find_inputs(args.inputs)
    objects = _objects(args.prompts, inputs)
    return _run(args, inputs, [PropagateOptions(tuple(o), args.axis, args.direction, args.lost_iou, args.lost_score,
                                                       args.stack_kind)
                                  for o in objects], None)


def _objects(prompts_path: str, inputs: list[Path]) -> list:
    """Each input's objects from the prompts file; entries that name no input are warned about."""
    from napari_seem.batch import load_prompts_file, prompts_for_inputs

    objects, unused = prompts_for_inputs(load_prompts_file(prompts_path), inputs, prompts_path)
    if unused:
        print(f"napari-seem: warning: {prompts_path}: entries {unused} name no input file", file=sys.stderr)
    return objects


def _check_common(args: argparse.Namespace) -> None:
    """Options that would fail every task, refused before any work (and before torch is imported)."""
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ValueError(f"checkpoint not found: {args.checkpoint}")
    for name in ("threads", "target_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if getattr(args, "axis", 0) not in (0, 1, 2):
        raise ValueError(f"--axis must be 0, 1 or 2 (the propagation axis of a (T, H, W) stack), got {args.axis}")
    _check_device(args.device)


_COMMON_DEVICE = re.compile(r"(cpu|cuda|mps)(:\d+)?")


def _check_device(name: str) -> None:
    if _COMMON_DEVICE.fullmatch(name):
        return  # well formed: no need to import torch (seconds) to know it
    import torch

    try:
        torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"--device {name!r} is not a torch device: {error}") from None


def _run(args: argparse.Namespace, inputs: list[Path], options: list, planes_per_task: int | None) -> dict[str, Any]:
    """Plan, run, write the summary; returns the short report the command prints."""
    from napari_seem.batch import ModelSpec, plan_jobs, run_jobs, write_summary

    _check_common(args)
    workers = 0 if args.local else args.workers
    if workers is None:
        workers = max(1, (os.cpu_count() or 1) // (args.threads or 1))
    in_process = args.scheduler is None and workers == 0
    threads = args.threads if args.threads is not None or in_process else 1
    checkpoint = os.path.abspath(args.checkpoint) if args.checkpoint else None
    model = ModelSpec(checkpoint, args.variant, 0, args.target_size, threads, args.device)
    jobs, skipped = plan_jobs(inputs, args.out, args.format, model, options, planes_per_task, args.skip_existing)
    summary_path = Path(args.summary) if args.summary else Path(args.out) / "summary.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)  # now, not after the batch
    result = run_jobs(jobs, args.scheduler, workers, args.retries, progress=not args.no_progress)
    weights = next((s["weights"] for s in result.summaries if s["status"] == "ok"), None)
    write_summary(summary_path, result, command=args.command, weights=weights, model=dataclasses.asdict(model),
                  format=args.format, skipped=[str(p) for p in skipped])
    return {"summary": str(summary_path), "cluster": result.cluster, "ok": len(result.summaries) - len(result.failed),
            "skipped": len(skipped), "failed": [{"input": s["input"], "error": s["error"]} for s in result.failed],
            "weights": weights, "seconds": result.seconds}


# ------------------------------------------------------------------------------ precompute on Dask
def add_precompute_cluster_options(parser: argparse.ArgumentParser) -> None:
    """Options that run ``napari-seem precompute`` through the batch runner (one task per file)."""
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="ADDRESS", help="encode on this Dask cluster, one task per file")
    cluster.add_argument("--workers", type=int, help="encode on a local Dask cluster of this many processes, one "
                         "task per file (default: in this process)")
    parser.add_argument("--retries", type=int, default=2, help="with a cluster: retries of a task that fails "
                        "unexpectedly (default 2)")
    parser.add_argument("--summary", help="with a cluster: write the per-file summary JSON here")


def wants_cluster(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "scheduler", None) or getattr(args, "workers", None))


def run_precompute_batch(args: argparse.Namespace, channels: list[int] | None) -> dict[str, Any]:
    """``napari-seem precompute`` on Dask: each file is a task encoding its planes into the cache
    (entries are written atomically, so workers can share one cache folder). ``channels``: the
    parsed ``--channels``."""
    from napari_seem.batch import Job, ModelSpec, PrecomputeOptions, Task, find_inputs, run_jobs, write_summary
    from napari_seem.engine.feature_cache import default_cache_dir

    inputs = find_inputs(args.images)
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ValueError(f"checkpoint not found: {args.checkpoint}")
    cache_dir = Path(os.path.abspath(args.cache)) if args.cache else default_cache_dir()
    options = PrecomputeOptions(str(cache_dir), None if args.max_gb is None else int(args.max_gb * 1e9),
                                args.axis, args.channel_axis, tuple(channels) if channels else None)
    checkpoint = os.path.abspath(args.checkpoint) if args.checkpoint else None
    model = ModelSpec(checkpoint, args.variant, 0, args.target_size, args.threads or 1, args.device)
    jobs = [Job(Task(str(path), str(cache_dir), "", model, options)) for path in inputs]
    result = run_jobs(jobs, args.scheduler, args.workers or 0, args.retries)
    done = [s for s in result.summaries if s["status"] == "ok"]
    weights = done[0]["weights"] if done else None
    counts = {k: sum(s[k] for s in done) for k in ("planes", "hits", "misses", "rejected")}
    if args.summary:
        write_summary(args.summary, result, command="precompute", weights=weights, model=dataclasses.asdict(model),
                      cache=str(cache_dir), **counts)
    return {"cache": str(cache_dir), "cluster": result.cluster, "images": len(done), **counts,
            "failed": [{"input": s["input"], "error": s["error"]} for s in result.failed], "weights": weights,
            "seconds": result.seconds}
