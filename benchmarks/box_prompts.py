"""Box prompts: three strategies compared by mean IoU against ground-truth nuclei (DSB 2018 subset).

Each ground-truth instance's bounding box is the prompt, given to the engine (``SeemPredictor``) as:

1. ``centre click``: one click at the box centre, the official "Box" evaluation (the click goes to
   the distance-transform maximum of the box region, which for a filled box is its centre);
2. ``box + embedding``: the filled box as a positive mask, answer chosen by the official
   embedding match only (``box_weight=0``, no clipping);
3. ``box + box-aware``: the filled box, answer chosen by embedding match and fit to the box
   (``postprocess.select_box_aware``), mask clipped to the box grown by ``--margin``.

All objects of an image are prompted in one ``predict`` call (v1 keeps them apart), once per strategy.

    .venv/bin/python benchmarks/box_prompts.py [--images 4] [--instances 10] [--checkpoint seem_focalt_v1.pt]
    .venv/bin/python benchmarks/box_prompts.py --embedded --names dsb_003 dsb_009 ... --instances 1000

Without ``--checkpoint`` the model has random weights (torch seed 0): its IoUs only show that the
pipeline runs and say nothing about the strategies.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

from napari_seem.engine import SeemPredictor
from napari_seem.model import PRESETS, build_with_weights
from napari_seem.prompts import Box, ObjectPrompt, Point

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "dsb2018_subset"
STRATEGIES = ("centre click", "box + embedding", "box + box-aware")


def pick(n_total: int, n_wanted: int) -> list[int]:
    """``n_wanted`` indices spread evenly over ``range(n_total)`` (all of them if fewer)."""
    if n_wanted >= n_total:
        return list(range(n_total))
    return sorted({int(round(v)) for v in np.linspace(0, n_total - 1, n_wanted)})


def load_sample(data: Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    import imageio.v3 as iio
    import tifffile

    image = iio.imread(data / "images" / f"{name}.png")
    if image.ndim == 3:
        image = image[..., :3]
    return image, tifffile.imread(data / "labels" / f"{name}.tif")


def gt_instances(labels: np.ndarray, n_wanted: int) -> list[tuple[np.ndarray, Box]]:
    """Up to ``n_wanted`` ground-truth masks (spread over the label ids) with their bounding boxes."""
    ids = [int(i) for i in np.unique(labels) if i]
    chosen = [ids[i] for i in pick(len(ids), n_wanted)]
    out = []
    for label in chosen:
        mask = labels == label
        ys, xs = np.nonzero(mask)
        if ys.max() == ys.min() or xs.max() == xs.min():
            continue  # a one-pixel-thin box is not a valid box prompt
        out.append((mask, Box(float(ys.min()), float(xs.min()), float(ys.max()), float(xs.max()))))
    return out


def prompts_for(strategy: str, boxes: list[Box]) -> list[ObjectPrompt]:
    if strategy == "centre click":
        return [ObjectPrompt(points=[Point((b.y0 + b.y1) / 2, (b.x0 + b.x1) / 2)]) for b in boxes]
    return [ObjectPrompt(boxes=[b]) for b in boxes]


def configure(predictor: SeemPredictor, strategy: str, box_weight: float, margin: float) -> None:
    if strategy == "box + box-aware":
        predictor.box_weight, predictor.box_margin = box_weight, margin
    else:  # the centre click has no box; "box + embedding" is the plain official selection
        predictor.box_weight, predictor.box_margin = 0.0, None


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="dsb2018_subset folder")
    parser.add_argument("--images", type=int, default=4, help="images used, spread over the manifest (max 48)")
    parser.add_argument("--instances", type=int, default=10, help="instances per image, spread over the ids")
    parser.add_argument("--variant", default="focalt_v1", choices=sorted(PRESETS))
    parser.add_argument("--checkpoint", help="an official SEEM checkpoint matching --variant (default: random weights)")
    parser.add_argument("--embedded", action="store_true", help="use the embedded default model instead")
    parser.add_argument("--names", nargs="*", help="these images (e.g. the held-out ones) instead of --images")
    parser.add_argument("--target-size", type=int, default=512)
    parser.add_argument("--box-weight", type=float, default=0.5)
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the per-image results here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    if args.embedded:
        from napari_seem.loading import load_model

        model, weights, args.variant = load_model(), "the embedded default model", "default_tiny"
    else:
        model, weights = build_with_weights(args.variant, args.checkpoint)
    print(f"model: {args.variant}, {weights}")
    if not (args.checkpoint or args.embedded):
        print("WARNING: random-weight model: the IoUs below only show that the pipeline runs; "
              "they say nothing about which box strategy is better.")

    with open(args.data / "manifest.csv") as f:
        manifest = list(csv.DictReader(f))
    rows = [manifest[i] for i in pick(len(manifest), args.images)]
    if args.names:
        rows = [r for r in manifest if r["name"] in set(args.names)]
    predictor = SeemPredictor(model, target_size=args.target_size)
    ious: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    per_image = []
    for row in rows:
        image, labels = load_sample(args.data, row["name"])
        instances = gt_instances(labels, args.instances)
        start = time.perf_counter()
        predictor.set_image(image)
        encode_s = time.perf_counter() - start
        record = {"name": row["name"], "kind": row["kind"], "shape": list(labels.shape),
                  "instances": len(instances), "encode_s": round(encode_s, 2)}
        for strategy in STRATEGIES:
            configure(predictor, strategy, args.box_weight, args.margin)
            start = time.perf_counter()
            results = predictor.predict(prompts_for(strategy, [b for _, b in instances]))
            values = [iou(r.mask, gt) for r, (gt, _) in zip(results, instances)]
            ious[strategy] += values
            record[strategy] = {"mean_iou": round(float(np.mean(values)), 4),
                                "predict_s": round(time.perf_counter() - start, 2)}
        per_image.append(record)
        print(f"{row['name']} ({row['kind']}, {labels.shape[0]}x{labels.shape[1]}, {len(instances)} nuclei, "
              f"encode {encode_s:.1f} s): "
              + ", ".join(f"{s} {record[s]['mean_iou']:.3f}" for s in STRATEGIES))

    n = len(ious[STRATEGIES[0]])
    print(f"\nmean IoU over {n} instances from {len(rows)} images ({weights}):")
    for strategy in STRATEGIES:
        values = np.asarray(ious[strategy])
        print(f"  {strategy:<18} {values.mean():.4f}   (IoU >= 0.5: {np.mean(values >= 0.5):.0%})")
    if args.json:
        args.json.write_text(json.dumps({"weights": weights, "variant": args.variant, "images": per_image,
                                         "mean_iou": {s: float(np.mean(v)) for s, v in ious.items()}}, indent=1))


if __name__ == "__main__":
    main()
