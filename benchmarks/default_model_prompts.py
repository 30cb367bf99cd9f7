"""What a model answers to each prompt type, measured on held-out images with ground truth.

For every ground-truth object of each image (objects under ``--min-area`` pixels skipped), one
prompt of each visual kind, each in its own ``predict`` call, its IoU with the object:

* ``click``: the evaluation protocol's first click (interior point farthest from the boundary);
* ``box``: the object's bounding box (box-aware selection, the engine's default);
* ``scribble``: a 3 px stroke through the object's interior along its main axis;
* ``mask``: the object's mask eroded by 2 px (a rough outline, as a previous frame would give);
* ``reference``: the object's mask on the same image given as a reference region ("find this
  one"), the answer compared with the object itself.

Per image, the text prompts (``--texts``) are compared with the union of all objects (semantic IoU),
and segment-everything with the vocabulary ``[text]``, by object queries and by a point grid, by the
mean IoU of each ground-truth object's best-overlapping instance, the number of instances and the
F1 score at IoU 0.5 (which counts false instances too).

    .venv/bin/python benchmarks/default_model_prompts.py [--checkpoint FILE] [--data DIR --names ...]

Without ``--checkpoint``: the embedded default model. Prints a table and writes JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import binary_erosion

from napari_seem.engine import SeemPredictor
from napari_seem.engine.conversion import mask_iou
from napari_seem.evaluation.clicks import first_click
from napari_seem.evaluation.instances import matched_ious, matches_at
from napari_seem.loading import load_model
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, ReferenceRegion, Scribble
from napari_seem.training.data import read_folder_item

REPO = Path(__file__).resolve().parents[1]
DSB_HELDOUT = ["dsb_003", "dsb_009", "dsb_014", "dsb_021", "dsb_027", "dsb_031", "dsb_035", "dsb_039", "dsb_046"]
KINDS = ("click", "box", "scribble", "mask", "reference")
STRATEGIES = ("queries", "points")  # segment_everything's


def visual_prompts(target: np.ndarray, image: np.ndarray) -> dict[str, ObjectPrompt]:
    """One prompt of each visual kind for the bool object mask ``target [H, W]``."""
    ys, xs = np.nonzero(target)
    click = first_click(target)
    centred = np.stack([ys, xs], 1) - [ys.mean(), xs.mean()]
    axis = np.linalg.svd(centred, full_matrices=False)[2][0] if len(ys) > 1 else np.array([1.0, 0.0])
    along = centred @ axis
    ends = [np.stack([ys, xs], 1)[int(np.argmin(np.abs(along - q)))] for q in np.quantile(along, [0.25, 0.75])]
    stroke = Scribble(tuple((float(y), float(x)) for y, x in ends), width=3.0)
    eroded = binary_erosion(target, iterations=2)
    return {
        "click": ObjectPrompt(points=[Point(click.y, click.x)]),
        "box": ObjectPrompt(boxes=[Box(float(ys.min()), float(xs.min()), float(ys.max()), float(xs.max()))]),
        "scribble": ObjectPrompt(scribbles=[stroke]),
        "mask": ObjectPrompt(masks=[MaskPrompt(eroded if eroded.any() else target)]),
        "reference": ObjectPrompt(reference=ReferenceRegion(image, target)),
    }


def evaluate(predictor: SeemPredictor, data: Path, names: list[str], texts: list[str], min_area: int) -> dict:
    ious = {k: [] for k in KINDS}
    text_ious = {t: [] for t in texts}
    everything = {t: {strategy: [] for strategy in STRATEGIES} for t in texts}
    counts = {t: {strategy: np.zeros(3, int) for strategy in STRATEGIES} for t in texts}  # matched, found, objects
    seconds = {k: [] for k in KINDS}
    for name in names:
        image, labels = read_folder_item(data, name)
        predictor.set_image(image)
        for i in np.unique(labels[labels > 0]):
            target = labels == i
            if target.sum() < min_area:
                continue
            for kind, prompt in visual_prompts(target, image).items():
                start = time.perf_counter()
                result = predictor.predict(prompt)[0]
                seconds[kind].append(time.perf_counter() - start)
                ious[kind].append(mask_iou(result.mask, target))
        for text in texts:
            text_ious[text].append(mask_iou(predictor.predict(ObjectPrompt(text=text))[0].mask, labels > 0))
            for strategy in STRATEGIES:
                found = predictor.segment_everything([text], strategy=strategy)
                everything[text][strategy].extend(matched_ious(found.labels, labels))
                counts[text][strategy] += matches_at(found.labels, labels)
    return {
        "dataset": data.name, "images": names, "objects": len(ious["click"]),
        "mean_iou": {k: float(np.mean(v)) for k, v in ious.items()},
        "ms_per_prompt": {k: 1000 * float(np.median(v)) for k, v in seconds.items()},
        "text_semantic_iou": {t: float(np.mean(v)) for t, v in text_ious.items()},
        "everything_matched_iou": {t: {k: float(np.mean(v)) for k, v in by.items()} for t, by in everything.items()},
        "everything_instances": {t: {k: int(c[1]) for k, c in by.items()} for t, by in counts.items()},
        "everything_f1_at_0.5": {t: {k: float(2 * c[0] / max(c[1] + c[2], 1)) for k, c in by.items()}
                                 for t, by in counts.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", help="a model file (default: the embedded default)")
    parser.add_argument("--variant", help="preset of an official checkpoint")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "dsb2018_subset"))
    parser.add_argument("--names", nargs="*", default=DSB_HELDOUT)
    parser.add_argument("--texts", nargs="*", default=["nucleus", "cell"])
    parser.add_argument("--min-area", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint, variant=args.variant)
    report = evaluate(SeemPredictor(model), Path(args.data), args.names, args.texts, args.min_area)
    report["weights"] = args.checkpoint or "embedded default"
    print(f"{report['dataset']}: {report['objects']} objects on {len(args.names)} images ({report['weights']})")
    for kind in KINDS:
        print(f"  {kind:<10} mean IoU {report['mean_iou'][kind]:.3f}   {report['ms_per_prompt'][kind]:6.1f} ms")
    for text in args.texts:
        matched = report["everything_matched_iou"][text]
        print(f"  text {text!r}: semantic IoU {report['text_semantic_iou'][text]:.3f}; segment-everything "
              "matched IoU " + ", ".join(f"{matched[k]:.3f} ({k})" for k in STRATEGIES))
        found, f1 = report["everything_instances"][text], report["everything_f1_at_0.5"][text]
        print(f"    instances found, F1 at IoU 0.5: "
              + ", ".join(f"{found[k]}, {f1[k]:.3f} ({k})" for k in STRATEGIES))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
