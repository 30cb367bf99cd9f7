"""``napari-seem eval interactive|propagation``: the evaluation protocols from the command line.

    napari-seem eval interactive --checkpoint runs/default/model.pt \\
        --data ../shared/data/dsb2018_subset --names dsb_003 dsb_009 --out eval.json
    napari-seem eval propagation --checkpoint runs/default/model.pt \\
        --data ../shared/data/usiigaci_t98g_timelapse_pseudogt --out propagation.json

The model is a trained checkpoint (it carries its config), an official SEEM checkpoint of
``--variant``, or, without ``--checkpoint``, random weights of ``--variant`` (said so in the report).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_eval_parser(sub, func) -> None:
    """The ``eval`` command and its two protocols, on the main parser's subparsers ``sub``."""
    evaluate = sub.add_parser("eval", help="evaluate a model: interactive clicks (NoC, mIoU) or propagation")
    protocols = evaluate.add_subparsers(dest="protocol", required=True)
    interactive = protocols.add_parser("interactive", help="NoC@85/90 and mIoU@1..5 with simulated clicks")
    interactive.add_argument("--data", action="append", required=True, metavar="PATH",
                             help="a dataset folder (images/, labels/, optional manifest.csv); repeatable")
    interactive.add_argument("--names", nargs="*", help="evaluate only these items (e.g. the held-out images)")
    interactive.add_argument("--max-clicks", type=int, default=20)
    interactive.add_argument("--max-objects", type=int, help="at most this many objects per image (seeded choice)")
    interactive.add_argument("--min-area", type=int, default=10, help="skip objects with fewer pixels (default 10)")
    interactive.add_argument("--per-object", action="store_true", help="also write every object's clicks and IoUs")
    interactive.add_argument("--baseline", choices=("random_walker", "none"), default="random_walker",
                             help="also run the classical floor on the same objects (default: random_walker)")
    propagation = protocols.add_parser(
        "propagation", help="J, F, J&F, J_volume of objects propagated through a time-lapse or z-stacks")
    propagation.add_argument("--data", required=True, metavar="PATH",
                             help="a time-lapse folder (images.tif (T, H, W) and tracked labels: the tracks of frame "
                             "0 are prompted there, propagated forward) or a z-stack folder (images/*.tif and "
                             "labels/*.tif: every object is prompted on the middle slice of its extent, propagated "
                             "both ways)")
    propagation.add_argument("--images", default="images.tif", help="frames file in a time-lapse --data")
    propagation.add_argument("--labels", default="labels_tracked_pseudogt.tif",
                             help="tracked labels file in a time-lapse --data")
    propagation.add_argument("--frames", type=int, help="only the first N frames (slices)")
    propagation.add_argument("--prompt", choices=("mask", "click"), default="mask",
                             help="each object's prompt: its reference mask, or one click at its centre "
                             "(default: mask)")
    propagation.add_argument("--stack-kind", choices=("auto", "time", "z"), default="auto",
                             help="the session's rule for objects that leave (default: z for a z-stack folder)")
    propagation.add_argument("--baseline", choices=("random_walker", "none"), default="random_walker",
                             help="also run the classical floor on the same objects (default: random_walker)")
    propagation.add_argument("--feature-cache", metavar="DIR",
                             help="an on-disk feature cache: frames are encoded once across runs")
    for parser in (interactive, propagation):
        parser.add_argument("--checkpoint", help="a trained or official checkpoint (default: random weights)")
        parser.add_argument("--variant", default="default_tiny", help="preset of an official checkpoint or of "
                            "random weights (default: default_tiny)")
        parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
        parser.add_argument("--seed", type=int, default=0,
                            help="seed of random weights and of the prompt points the model samples (default: 0)")
        parser.add_argument("--out", help="write the full report as JSON here")
        parser.set_defaults(func=func)


def _predictor(args: argparse.Namespace):
    import torch

    from napari_seem.engine import SeemPredictor
    from napari_seem.training.checkpoint import load_model

    torch.set_num_threads(args.threads)
    model, weights = load_model(args.checkpoint, args.variant, args.seed)
    return SeemPredictor(model, seed=args.seed), weights


def run(args: argparse.Namespace) -> dict:
    if args.protocol == "interactive":
        return run_interactive(args)
    return run_propagation(args)


def _items(root: str, names: set[str] | None):
    from napari_seem.training.data import folder_names, read_folder_item

    for name in folder_names(root):
        if names is None or name in names:
            image, labels = read_folder_item(root, name)
            yield name, image, labels


def run_interactive(args: argparse.Namespace) -> dict:
    wanted = set(args.names) if args.names else None
    _check_interactive(args, wanted)
    from .baseline import RandomWalkerPredictor  # torch: only once the arguments are known to work
    from .interactive import evaluate_interactive, format_table

    predictor, weights = _predictor(args)
    floor = RandomWalkerPredictor() if args.baseline == "random_walker" else None
    reports, floors = [], []
    for root in args.data:
        chosen = list(_items(root, wanted))
        if not chosen:
            continue
        options = (Path(root).name, args.max_clicks, args.max_objects, args.min_area, args.seed)
        reports.append(evaluate_interactive(predictor, chosen, *options))
        if floor is not None:  # the same seed picks the same objects
            floors.append(evaluate_interactive(floor, chosen, *options))
    if not reports:
        raise ValueError(f"no images to evaluate in {args.data} (names: {sorted(wanted) if wanted else 'all'})")
    print(f"model: {weights}\n{format_table(reports)}", flush=True)
    if floors:
        print(f"\nclassical floor, the same objects and protocol: {floor.name}\n{format_table(floors)}", flush=True)
    result = {"protocol": "interactive", "weights": weights, "max_clicks": args.max_clicks,
              "max_objects": args.max_objects, "names": sorted(wanted) if wanted else "all",
              "datasets": [r.summary() for r in reports]}
    if floors:
        result["baseline"] = {"name": floor.name, "beta": floor.beta, "margin": floor.margin,
                              "datasets": [r.summary() for r in floors]}
    if args.out:
        full = dict(result)
        if args.per_object:
            full["per_object"] = [vars(t) for r in reports for t in r.traces]
        _write_json(args.out, full)
    return result


def _check_interactive(args: argparse.Namespace, wanted: set[str] | None) -> None:
    """Arguments that cannot work, refused before the model loads; the plain checks before torch is
    imported (``training.data`` imports it: a missing folder is reported in well under 2 s)."""
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ValueError(f"checkpoint not found: {args.checkpoint}")
    if args.max_clicks < 1 or args.threads < 1:
        raise ValueError(f"--max-clicks and --threads must be >= 1, got {args.max_clicks} and {args.threads}")
    for root in args.data:
        if not Path(root).is_dir():
            raise ValueError(f"--data {root}: no such folder")
        if not (Path(root) / "manifest.csv").is_file() and not (Path(root) / "images").is_dir():
            raise ValueError(f"{root} has no images/ folder")
    from napari_seem.training.data import folder_names

    names = {name for root in args.data for name in folder_names(root)}
    if not (names & wanted if wanted else names):
        raise ValueError(f"no images to evaluate in {args.data} (names: {sorted(wanted) if wanted else 'all'})")


def run_propagation(args: argparse.Namespace) -> dict:
    if args.checkpoint and not Path(args.checkpoint).is_file():
        raise ValueError(f"checkpoint not found: {args.checkpoint}")
    if not Path(args.data).is_dir():
        raise ValueError(f"--data {args.data}: no such folder")
    if args.threads < 1 or (args.frames is not None and args.frames < 2):
        raise ValueError(f"--threads must be >= 1 and --frames >= 2, got {args.threads} and {args.frames}")
    from .baseline import RandomWalkerSession  # torch: only once the arguments are known to work
    from .propagation import combine, evaluate_propagation, format_reports, load_stacks

    stacks, anchors = load_stacks(args.data, args.images, args.labels)
    kind = {"auto": "z" if anchors == "middle" else "time"}.get(args.stack_kind, args.stack_kind)
    predictor, weights = _predictor(args)
    cache = None
    if args.feature_cache:
        from napari_seem.engine import FeatureCache

        cache = FeatureCache(args.feature_cache)
    set_name = Path(args.data).name

    def show(step) -> None:
        print(f"  frame {step.frame:3d}: {len(step.results):3d} objects, {len(step.lost):2d} lost", flush=True)

    def run_all(factory, label):
        reports = []
        for name, frames, reference in stacks:
            print(f"{label}: {name} ({len(frames)} frames)", flush=True)
            reports.append(evaluate_propagation(predictor, frames, reference, args.frames, show, prompt=args.prompt,
                                                anchors=anchors, name=name, session_factory=factory))
        return reports

    def model_session(frames):
        from napari_seem.engine import VideoSession

        return VideoSession(predictor, frames, stack_kind=kind, cache=cache)

    reports = run_all(model_session, "model")
    rows = [(f"model {r.name}", r) for r in reports] if len(reports) > 1 else []
    total = combine(reports, set_name)
    rows.append((f"model, {set_name}", total))
    floor_total = None
    if args.baseline == "random_walker":
        contrast = 0.15 if kind == "z" else None  # fluorescence nuclei in z; phase-contrast cells have none
        floors = run_all(lambda frames: RandomWalkerSession(frames, min_contrast=contrast), "floor")
        floor_total = combine(floors, set_name)
        rows.append((f"random walker, {set_name}", floor_total))
    print(f"model: {weights}; prompt: {args.prompt} on {'frame 0' if anchors == 'first' else 'the middle slices'}, "
          f"stack kind {kind}; agreement with the reference labels\n{format_reports(rows)}", flush=True)
    result = {"protocol": "propagation", "weights": weights, "data": str(args.data), "prompt": args.prompt,
              "stack_kind": kind, **total.summary(), "stacks": [r.summary() for r in reports]}
    if floor_total is not None:
        result["baseline"] = {**floor_total.summary(), "name": RandomWalkerSession.name}
    if args.out:
        _write_json(args.out, {**result, "per_frame": total.full()["per_frame"],
                               "per_object": total.full()["per_object"]})
    return result


def _write_json(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2))
