"""Can the training recipe fit a few images? The first diagnosis of a plateau (issue: overfit one
image and a batch of 8 to near-perfect masks before training longer).

    python benchmarks/overfit.py --data ../shared/data/dsb2018_train --names dsbt_000 --steps 400
    python benchmarks/overfit.py --data ../shared/data/dsb2018_train --first 8 --steps 400

Trains ``default_tiny`` (from random weights, or ``--init``) on the chosen images with the
interactive task only, whole images as crops, no augmentation, then runs one click per object on
the *same* images and prints the mean IoU with the clicked object, the share of first masks that
match a neighbour better, and the loss curve. Both the raw model (no engine post-processing) and
the engine's defaults are measured.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from napari_seem.engine import SeemPredictor
from napari_seem.evaluation.interactive import evaluate_interactive
from napari_seem.training import DatasetSpec, TaskConfig, TrainConfig, load_trained, train
from napari_seem.training.data import Augmentation, folder_names, read_folder_item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--names", nargs="*")
    parser.add_argument("--first", type=int, default=1, help="the first N images (without --names)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--init", help="start from this checkpoint (default: random weights)")
    parser.add_argument("--max-rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--prompt-similarity", action="store_true",
                        help="default_tiny with DecoderConfig.prompt_similarity on")
    parser.add_argument("--out", default="runs/overfit")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.names or folder_names(args.data)[: args.first]
    pairs = [read_folder_item(args.data, n) for n in names]
    losses = []
    config = TrainConfig(
        out_dir=args.out, datasets=[DatasetSpec(pairs=pairs, names=names, class_name="nucleus")],
        prompt_similarity=args.prompt_similarity, init_checkpoint=args.init, steps=args.steps,
        batch_size=len(pairs), lr=args.lr, warmup_steps=20,
        augmentation=Augmentation(crop_size=args.crop, scale=(1.0, 1.0), flips=False, rotations=False,
                                  brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0), noise=0.0, grayscale=0.0),
        tasks=TaskConfig(generic=0.0, grounding=0.0, max_rounds=args.max_rounds, position_offset=0.0),
        threads=args.threads, checkpoint_every=0, log_every=10,
        callback=lambda p: losses.append(p.losses["loss"]),
    )
    start = time.perf_counter()
    path = train(config)
    print(f"{len(names)} image(s), {args.steps} steps in {time.perf_counter() - start:.0f} s")
    for k in range(0, len(losses), max(len(losses) // 10, 1)):
        print(f"  step {k + 1:5d}: loss {np.mean(losses[k : k + 10]):.2f}")
    model = load_trained(path)
    items = [(n, image, labels) for n, (image, labels) in zip(names, pairs)]
    for label, predictor in (("raw model", SeemPredictor(model, keep_connected=False, obey_clicks=False)),
                             ("engine defaults", SeemPredictor(model))):
        report = evaluate_interactive(predictor, items, "train images", max_clicks=1)
        print(f"{label:16s}: {report.objects} objects, mIoU@1 {report.miou['mIoU@1']:.3f}, "
              f"neighbour {report.neighbour_rate:.3f}")


if __name__ == "__main__":
    main()
