"""``napari-seem precompute``: fill the feature cache ahead of time (e.g. on a GPU machine), so that
annotating later (on a laptop, in the plugin) only decodes.

Every plane of every image is prepared as the engine prepares it (channel choice, normalisation,
resize to ``target_size``) and encoded unless the cache already holds a valid entry for it. A 2D
image (gray, or RGB/RGBA) is one plane; a stack gives one plane per index of its stack axis
(``axis``, default the first) and of any other leading axis. The model, ``target_size`` and channel
choice must be the ones used when annotating, or the entries will not match: ``--model default``
is the plugin's default model, ``--model FILE`` a checkpoint as ``napari_seem.load_model`` reads it.

The work is :func:`napari_seem.batch.precompute.precompute` (a plain function, also run by the
batch runner's precompute tasks); this module is its command line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_seem.batch.precompute import existing_files, precompute
from napari_seem.loading import official_entry


def run_precompute(args: argparse.Namespace) -> dict:
    from napari_seem.cli.batch import run_precompute_batch, wants_cluster

    if args.model is None and args.variant is None:
        args.variant = "focalt_v1"  # the demo's default (--variant has none: with --model it is optional)
    channels = _parse_channels(args.channels)
    if wants_cluster(args):  # --scheduler / --workers: one Dask task per file (cli/batch.py)
        if args.model is not None:
            raise ValueError("--model is not supported with --scheduler/--workers yet: use --variant/--checkpoint")
        return run_precompute_batch(args, channels)
    # Arguments first: torch and the model take seconds to load.
    existing_files(args.images)
    if args.model is not None and args.checkpoint:
        raise ValueError("give either --model or --checkpoint, not both")
    if args.checkpoint and not Path(args.checkpoint).expanduser().is_file():
        raise ValueError(f"checkpoint not found: {args.checkpoint}")
    if args.model not in (None, "default") and not Path(args.model).expanduser().is_file() \
            and official_entry(args.model) is None:
        raise ValueError(f"--model {args.model}: no such file, nor a released checkpoint name (seem_focalt_v1, ...)")
    import torch

    from napari_seem.engine.feature_cache import FeatureCache

    if args.threads:
        torch.set_num_threads(args.threads)
    cache = FeatureCache(args.cache, max_bytes=None if args.max_gb is None else int(args.max_gb * 1e9))
    model, weights = _model(args)
    model = model.to(args.device)
    report = precompute(args.images, cache, model, args.target_size, args.axis, args.channel_axis, channels)
    return {**report, "weights": weights}


def _model(args: argparse.Namespace):
    """``--model`` (as ``napari_seem.load_model`` takes it), else ``--variant``/``--checkpoint`` as in the demo."""
    if args.model is None:
        from napari_seem.model import build_with_weights

        return build_with_weights(args.variant, args.checkpoint)
    from napari_seem.loading import load_model

    model = load_model(None if args.model == "default" else args.model, variant=args.variant)
    return model, f"--model {args.model}"


def _parse_channels(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(c) for c in text.split(",")]
    except ValueError:
        raise ValueError(f"--channels must be comma-separated integers, got {text!r}") from None


def add_precompute_parser(sub) -> None:
    cmd = sub.add_parser("precompute", help="encode images into the feature cache ahead of annotation")
    cmd.add_argument("images", nargs="+", help="2D images or stacks (TIFF, PNG, ...)")
    cmd.add_argument("--cache", help="cache folder (default: $NAPARI_SEEM_CACHE/features, "
                                     "i.e. ~/.cache/napari-seem/features; the plugin's)")
    cmd.add_argument("--max-gb", type=float, help="bound the cache to this size (least recently used go first)")
    cmd.add_argument("--model", help="the model as napari_seem.load_model takes it: 'default' (the embedded "
                                     "default, the plugin's), a checkpoint file or a released name (seem_focalt_v1)")
    cmd.add_argument("--variant", help="without --model: model preset (default: focalt_v1); with it: the preset "
                                       "of an official checkpoint file")
    cmd.add_argument("--checkpoint", help="without --model: an official checkpoint matching --variant "
                                          "(default: random weights, seed 0)")
    cmd.add_argument("--target-size", type=int, default=512, help="model input size, as when annotating (512)")
    cmd.add_argument("--axis", type=int, help="the stack axis (default: the first)")
    cmd.add_argument("--channel-axis", type=int, help="the channel axis of a multichannel image")
    cmd.add_argument("--channels", help="channel choice, e.g. '0' or '0,2' (as in the plugin)")
    cmd.add_argument("--device", default="cpu", help="where to encode: cpu, cuda, ... (default: cpu)")
    cmd.add_argument("--threads", type=int, help="CPU threads (default: torch's choice)")
    from napari_seem.cli.batch import add_precompute_cluster_options

    add_precompute_cluster_options(cmd)
    cmd.set_defaults(func=run_precompute)
