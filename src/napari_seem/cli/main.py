"""``napari-seem`` command line.

``napari-seem demo``: the main job (``cli/demo.py``): with the embedded default model, encode the
bundled held-out nucleus image once, segment nuclei from clicks, a text prompt and segment-everything,
and write labels (TIFF), an overlay (PNG) and a JSON report with the weights, timings and IoUs.

``napari-seem train``: train a model (default: the ``default_tiny`` preset) on dataset folders
(``--data``) or folders of image and label TIFFs (``--tiffs``), from random weights or a checkpoint
(``--init PATH``, ``--init default`` for the embedded default model), and write a checkpoint that
records its data, seed, code revision, metrics and command.

``napari-seem eval interactive|propagation``: the standard click protocol (NoC@85/90, mIoU after
1..5 clicks) on dataset folders, or propagation through a time-lapse against tracked labels.

Batch commands over files and folders (``cli/batch.py``), on a local Dask cluster by default,
``--scheduler ADDRESS`` for an existing one, ``--local`` for none; labels as TIFF or zarr
(``--format``), a ``summary.json``, exit status 1 if any file failed:

``napari-seem segment INPUTS... --prompts prompts.json --out DIR``: the objects of a JSON prompts
file (points, boxes, scribbles, text per file name; see ``batch/prompts_file.py``).

``napari-seem everything INPUTS... --vocabulary "nucleus,cell" --out DIR``: segment everything.

``napari-seem propagate STACKS... --prompts prompts.json --axis 0 --direction both --out DIR``:
carry the prompted objects through each stack (one task per stack: propagation is sequential).

``napari-seem replay PROVENANCE IMAGE --out LABELS``: re-run the prompts recorded beside saved labels
(``cli/replay.py``), to audit them or regenerate them with another model.

``napari-seem precompute IMAGES... [--cache DIR]``: fill the feature cache (every plane of 2D images
and stacks) so that annotating later only decodes (``cli/precompute.py``).
"""

from __future__ import annotations

import argparse
import json
import sys


def run_fetch(args: argparse.Namespace) -> dict:
    from napari_seem.io.checkpoints import fetch_checkpoint, sha256_of

    path = fetch_checkpoint(args.name)
    return {"checkpoint": str(path), "sha256": sha256_of(path)}


def parse_data_spec(spec: str):
    """``PATH[:CLASS[:WEIGHT]]`` -> a :class:`~napari_seem.training.DatasetSpec`."""
    from napari_seem.training import DatasetSpec

    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise argparse.ArgumentTypeError(f"expected PATH[:CLASS[:WEIGHT]], got {spec!r}")
    class_name = parts[1] if len(parts) > 1 and parts[1] else "object"
    try:
        weight = float(parts[2]) if len(parts) > 2 else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"weight must be a number in {spec!r}") from None
    return DatasetSpec(path=parts[0], class_name=class_name, weight=weight)


def parse_tiff_spec(spec: str) -> tuple[str, str, str, float]:
    """``IMAGES_DIR:LABELS_DIR[:CLASS[:WEIGHT]]`` -> ``(images, labels, class, weight)``."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 4 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(f"expected IMAGES_DIR:LABELS_DIR[:CLASS[:WEIGHT]], got {spec!r}")
    try:
        weight = float(parts[3]) if len(parts) > 3 else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"weight must be a number in {spec!r}") from None
    return parts[0], parts[1], (parts[2] if len(parts) > 2 and parts[2] else "object"), weight


def _tiff_datasets(specs) -> list:
    """In-memory datasets of the labelled planes of TIFF folder pairs (stacks split into planes)."""
    from napari_seem.plugin.controller import PluginError
    from napari_seem.plugin.training_pairs import folder_pairs
    from napari_seem.training import DatasetSpec

    datasets = []
    for images, labels, class_name, weight in specs or []:
        try:
            found = folder_pairs(images, labels)
        except PluginError as err:
            raise ValueError(str(err)) from None
        datasets.append(DatasetSpec(pairs=found.pairs, names=found.names, class_name=class_name, weight=weight))
    return datasets


def _init_checkpoint(init: str | None) -> str | None:
    """``--init``: a checkpoint path, or ``default`` for the embedded default model."""
    if init != "default":
        return init
    from napari_seem.loading import default_checkpoint, default_problem

    problem = default_problem()
    if problem:
        raise FileNotFoundError(problem)
    return str(default_checkpoint())


def run_train(args: argparse.Namespace) -> dict:
    import shlex

    from napari_seem.training import Augmentation, LossWeights, TaskConfig, TrainConfig, read_record, train

    from napari_seem.training.loop import packed_specs

    datasets = list(args.data or []) + _tiff_datasets(args.tiffs)
    datasets += [spec for path in args.packed or [] for spec in packed_specs(path)]
    if not datasets:
        raise ValueError("no training data: give --data DATASET_FOLDER, --tiffs IMAGES_DIR:LABELS_DIR "
                         "and/or --packed FILE")

    if not 0 < args.zoom[0] <= args.zoom[1]:
        raise ValueError(f"--zoom LO HI needs 0 < LO <= HI, got {args.zoom[0]} {args.zoom[1]}")
    tasks = TaskConfig(
        objects_per_image=args.objects_per_image, single_object_fraction=args.single_object_fraction,
        max_rounds=args.max_rounds,
        generic_fraction=args.generic_fraction, grounding_fraction=args.grounding_fraction,
        deep_supervision=not args.no_deep_supervision,
        # Absolute-position models: crops stand anywhere in a 512-pixel (model-scale) image.
        position_offset=float(max(512 - args.crop, 0)),
        weights=LossWeights(selection_weight=args.selection_weight),
        video_fraction=args.video_fraction,
    )
    log_every = args.log_every

    def report(progress) -> None:
        if progress.step % log_every == 0 or progress.step == progress.total or progress.checkpoint:
            saved = f", saved {progress.checkpoint}" if progress.checkpoint else ""
            print(f"step {progress.step}/{progress.total}: loss {progress.losses.get('loss', float('nan')):.3f} "
                  f"(mean of last 50: {progress.loss_mean:.3f}), lr {progress.lr:.2e}, "
                  f"{progress.elapsed_s:.0f} s{saved}", flush=True)

    config = TrainConfig(
        out_dir=args.out, datasets=datasets, holdout=args.holdout, model=args.model,
        init_checkpoint=_init_checkpoint(args.init),
        steps=args.steps, batch_size=args.batch_size, augmentation=Augmentation(crop_size=args.crop, invert=args.invert, scale=tuple(args.zoom)), tasks=tasks,
        lr=args.lr, warmup_steps=args.warmup, weight_decay=args.weight_decay, grad_clip=args.grad_clip,
        device=args.device, threads=args.threads, seed=args.seed, checkpoint_every=args.checkpoint_every,
        snapshots=args.snapshots, resume=args.resume, stop_after=args.stop_after, prompt_similarity=args.prompt_similarity, log_every=log_every, time_limit_s=None if args.time_limit is None else args.time_limit * 60,
        command="napari-seem " + " ".join(shlex.quote(a) for a in args.argv), callback=report,
    )
    path = train(config)
    metrics = read_record(path)["metrics"]
    return {"checkpoint": str(path), "size_mb": round(path.stat().st_size / 1e6, 2),
            **{k: metrics[k] for k in ("steps", "wall_time_s", "loss_mean_last50", "stop_reason")}}


def run_pack(args: argparse.Namespace) -> dict:
    from napari_seem.training.pack import pack, read_meta

    path = pack(args.data, args.out, args.holdout)
    sources = read_meta(path)["sources"]
    return {"packed": str(path), "size_mb": round(path.stat().st_size / 1e6, 2),
            "items": {s["path"]: len(s["names"]) for s in sources}}


def run_eval(args: argparse.Namespace) -> dict:
    from napari_seem.evaluation.cli import run

    return run(args)


def _add_train_parser(sub) -> None:
    train = sub.add_parser("train", help="train a SEEM model on instance-labelled dataset folders")
    train.add_argument("--data", action="append", type=parse_data_spec, metavar="PATH[:CLASS[:WEIGHT]]",
                       help="a dataset folder (images/, labels/, optional manifest.csv), the class name of its "
                            "objects (default 'object') and its weight in the mix (default 1); repeatable")
    train.add_argument("--tiffs", action="append", type=parse_tiff_spec,
                       metavar="IMAGES_DIR:LABELS_DIR[:CLASS[:WEIGHT]]",
                       help="a folder of image TIFFs and a folder of label TIFFs with the same file names; stacks "
                            "are split into planes and planes without labels skipped; repeatable")
    train.add_argument("--packed", action="append", metavar="FILE",
                       help="a packed data file (napari-seem pack): its sources with their classes and weights")
    train.add_argument("--holdout", nargs="*", default=[], metavar="NAME", help="item names kept out of training")
    train.add_argument("--out", required=True, help="output folder for the checkpoint (model.pt)")
    train.add_argument("--model", default="default_tiny", help="model preset (default: default_tiny)")
    train.add_argument("--init", "--init-checkpoint", dest="init",
                       help="start from this checkpoint (trained, or official for --model), or 'default' for the "
                            "embedded default model")
    train.add_argument("--steps", type=int, default=1000)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--crop", type=int, default=256, help="training crop size at model scale (default 256)")
    train.add_argument("--invert", type=float, default=0.0, metavar="P",
                       help="probability of inverting a crop's intensities (brightfield-like; default 0)")
    train.add_argument("--lr", type=float, default=3e-4)
    train.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    train.add_argument("--weight-decay", type=float, default=0.05)
    train.add_argument("--grad-clip", type=float, default=1.0)
    train.add_argument("--objects-per-image", type=int, default=4, help="prompted objects per image and step")
    train.add_argument("--single-object-fraction", type=float, default=0.5,
                       help="share of steps prompting one object per image, as users do (default 0.5)")
    train.add_argument("--max-rounds", type=int, default=3, help="most interactive rounds per step (memory)")
    train.add_argument("--generic-fraction", type=float, default=1.0, help="share of steps with generic segmentation")
    train.add_argument("--grounding-fraction", type=float, default=1.0, help="share of steps with text grounding")
    train.add_argument("--no-deep-supervision", action="store_true", help="supervise the last decoder layer only")
    train.add_argument("--selection-weight", type=float, default=2.0,
                       help="weight of the cross-entropy that picks one of a prompt's candidate masks (default 2; "
                            "0 drops it, e.g. while the candidates coincide)")
    train.add_argument("--zoom", type=float, nargs=2, default=(0.8, 1.25), metavar=("LO", "HI"),
                       help="range of the crops' random zoom (log-uniform; default 0.8 1.25)")
    train.add_argument("--video-fraction", type=float, default=0.0,
                       help="share of steps that train propagation on a crop and a moved copy of it "
                            "(pseudo-video, default 0)")
    train.add_argument("--time-limit", type=float, help="stop and save after this many minutes")
    train.add_argument("--device", default="auto", help="auto (a GPU when there is one, else the CPU), cpu, "
                       "cuda, cuda:1, mps, ... (default: auto)")
    train.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (0: at the end)")
    train.add_argument("--prompt-similarity", action="store_true",
                       help="add the decoder's prompt-similarity term (ours; localises clicks in small models)")
    train.add_argument("--stop-after", type=int, metavar="N",
                       help="stop after N steps, the learning-rate schedule still planned for --steps")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its train_state.pt (written with every checkpoint)")
    train.add_argument("--snapshots", action="store_true", help="keep every periodic checkpoint as model_step<N>.pt")
    train.add_argument("--log-every", type=int, default=10)
    train.set_defaults(func=run_train)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; given the ``command`` about to run, the ``eval`` subcommand's
    options are only defined when it is ``eval`` (the evaluation package imports torch: seconds)."""
    parser = argparse.ArgumentParser(prog="napari-seem", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    from napari_seem.cli.demo import add_demo_parser

    add_demo_parser(sub)
    fetch = sub.add_parser("fetch", help="download an official SEEM checkpoint into the cache (verified)")
    fetch.add_argument("name", help="seem_focalt_v1, seem_focall_v1, seem_focalt_v0 or seem_focall_v0")
    fetch.set_defaults(func=run_fetch)
    _add_train_parser(sub)
    packer = sub.add_parser("pack", help="pack dataset folders into one compact training file (to train elsewhere)")
    packer.add_argument("--data", action="append", required=True, type=parse_data_spec, metavar="PATH[:CLASS[:WEIGHT]]",
                        help="a dataset folder, its class name and weight in the mix; repeatable")
    packer.add_argument("--holdout", nargs="*", default=[], metavar="NAME", help="item names left out")
    packer.add_argument("--out", required=True, help="the packed file (.npz)")
    packer.set_defaults(func=run_pack)
    if command is None or command == "eval":
        from napari_seem.evaluation.cli import add_eval_parser

        add_eval_parser(sub, run_eval)
    else:  # still a known command name (its help shows only with the full parser)
        sub.add_parser("eval")
    from napari_seem.cli.batch import add_batch_parsers

    add_batch_parsers(sub)
    from napari_seem.cli.precompute import add_precompute_parser

    add_precompute_parser(sub)
    from napari_seem.cli.replay import add_replay_parser

    add_replay_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    args.argv = argv
    try:
        report = args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"napari-seem: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 1 if report.get("failed") else 0  # batch commands: some files failed (the others are written)


if __name__ == "__main__":
    sys.exit(main())
