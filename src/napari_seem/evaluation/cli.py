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
    propagation = protocols.add_parser("propagation", help="J, F, J&F against tracked labels of a time-lapse")
    propagation.add_argument("--data", required=True, metavar="PATH",
                             help="a folder with images.tif (T, H, W) and labels_tracked_pseudogt.tif")
    propagation.add_argument("--images", default="images.tif", help="frames file in --data")
    propagation.add_argument("--labels", default="labels_tracked_pseudogt.tif", help="tracked labels file in --data")
    propagation.add_argument("--frames", type=int, help="only the first N frames")
    for parser in (interactive, propagation):
        parser.add_argument("--checkpoint", help="a trained or official checkpoint (default: random weights)")
        parser.add_argument("--variant", default="default_tiny", help="preset of an official checkpoint or of "
                            "random weights (default: default_tiny)")
        parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--out", help="write the full report as JSON here")
        parser.set_defaults(func=func)


def _predictor(args: argparse.Namespace):
    import torch

    from napari_seem.engine import SeemPredictor
    from napari_seem.training.checkpoint import load_model

    torch.set_num_threads(args.threads)
    model, weights = load_model(args.checkpoint, args.variant, args.seed)
    return SeemPredictor(model), weights


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
    import tifffile

    from .propagation import evaluate_propagation

    root = Path(args.data)
    frames = tifffile.imread(root / args.images)
    reference = tifffile.imread(root / args.labels)
    if frames.shape[:3] != reference.shape[:3]:
        raise ValueError(f"frames {frames.shape} and labels {reference.shape} differ in (T, H, W)")
    predictor, weights = _predictor(args)

    def show(score) -> None:
        print(f"frame {score.frame:3d}: J {score.j:.3f}  F {score.f:.3f}  J&F {score.jf:.3f}  "
              f"tracks {score.tracks:3d}  lost {score.lost:3d}  {score.seconds:.2f} s", flush=True)

    report = evaluate_propagation(predictor, frames, reference, args.frames, progress=show)
    print(f"mean over frames 1..{report.frames - 1}: J {report.j:.3f}  F {report.f:.3f}  J&F {report.jf:.3f}  "
          f"lost tracks {report.lost_tracks}/{report.objects}  {report.seconds_per_frame:.2f} s/frame "
          "(agreement with the reference labels)", flush=True)
    summary = report.summary()
    result = {"protocol": "propagation", "weights": weights, "data": str(root), "labels": args.labels,
              **{k: v for k, v in summary.items() if k != "per_frame"}}
    if args.out:
        _write_json(args.out, {**result, "per_frame": summary["per_frame"]})
    return result


def _write_json(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2))
