"""``napari-seem demo``: the main job, offline, on the embedded default model.

By default it segments the bundled held-out nucleus image (``io/assets``, CC0, with ground truth)
the way a user would: the image is encoded once, then a few nuclei are clicked one at a time (each
click at the nucleus's interior point farthest from its boundary, the evaluation protocol's first
click) and, separately, boxed (their bounding boxes), the text prompt is decoded, and everything is
segmented with the vocabulary ``[text]``. It writes the labels (TIFF), an overlay (PNG) and a JSON report with the weights
statement, timings and, when ground truth is at hand, the IoU of every clicked nucleus and the
matched instances of segment-everything.

``--image PATH`` segments your own 2D image instead (clicks then go to the brightest spots of a
smoothed copy, there are no boxes and no ground truth); ``--checkpoint`` / ``--variant`` choose another model
(an official SEEM checkpoint, a fine-tuned napari-seem one, or random weights of a preset).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parent.parent / "io" / "assets"
SAMPLE_IMAGE = ASSETS / "nuclei_dsb2018_009.png"
SAMPLE_LABELS = ASSETS / "nuclei_dsb2018_009_labels.tif"
SAMPLE_NAME = "DSB 2018 nucleus image dsb_009 (bundled, CC0; held out from training the default model)"


def add_demo_parser(sub) -> None:
    demo = sub.add_parser("demo", help="the main job: segment a sample image with the embedded default model")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--image", help="a 2D gray or RGB image (TIFF/PNG); default: the bundled nucleus image")
    demo.add_argument("--checkpoint", help="another model: a napari-seem checkpoint, or an official SEEM file "
                                           "(with --variant); default: the embedded default model")
    demo.add_argument("--variant", help="model preset for an official checkpoint, or alone for RANDOM weights "
                                        "of that preset (e.g. focalt_v1)")
    demo.add_argument("--clicks", type=int, default=5, help="objects to click (default: 5)")
    demo.add_argument("--text", default="nucleus", help="text prompt and vocabulary (default: 'nucleus')")
    demo.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    demo.add_argument("--everything", choices=("auto", "queries", "points"), default="auto",
                      help="segment-everything strategy: auto (default) = points (a grid of clicks) for the "
                           "embedded default model and models napari-seem trained, the object queries for "
                           "official checkpoints")
    demo.set_defaults(func=run_demo)


def _load_model(args: argparse.Namespace):
    """The model and a statement of its weights."""
    from napari_seem.loading import default_model_info, describe_trained, load_model

    if args.checkpoint is None and args.variant is None:
        return load_model(), "embedded default: " + describe_trained(default_model_info())
    if args.checkpoint is None:
        from napari_seem.model import build_with_weights

        return build_with_weights(args.variant, None)
    model = load_model(args.checkpoint, variant=args.variant)
    return model, f"checkpoint {args.checkpoint}" + (f" ({args.variant})" if args.variant else "")


def _load_image(path: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The plane, its ground-truth labels when known, and where it came from."""
    import tifffile
    from skimage import io

    if path is None:
        return io.imread(SAMPLE_IMAGE), tifffile.imread(SAMPLE_LABELS), SAMPLE_NAME
    try:
        array = tifffile.imread(path) if path.lower().endswith((".tif", ".tiff")) else io.imread(path)
    except Exception:  # noqa: BLE001 - every reader fails its own way; the detail goes to the log
        logging.getLogger(__name__).debug("reading %s failed", path, exc_info=True)
        raise ValueError(f"--image {path} could not be read as an image (TIFF, PNG, JPEG...)") from None
    return array, None, path


def _click_points(plane: np.ndarray, labels: np.ndarray | None, count: int) -> list[tuple[int, int, int]]:
    """``(y, x, ground-truth id or 0)`` of up to ``count`` clicks: the first-click points of the
    largest ground-truth objects, or the brightest well-separated spots of a smoothed plane."""
    from napari_seem.evaluation.clicks import first_click

    if labels is not None:
        ids, areas = np.unique(labels[labels > 0], return_counts=True)
        chosen = ids[np.argsort(-areas, kind="stable")][:count]
        return [(c.y, c.x, int(i)) for i in chosen for c in [first_click(labels == i)]]
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian

    gray = plane.astype(np.float32) if plane.ndim == 2 else plane[..., :3].astype(np.float32).mean(-1)
    smooth = gaussian(gray, sigma=max(gray.shape) / 128)
    peaks = peak_local_max(smooth, min_distance=max(gray.shape) // 16, num_peaks=count)
    if len(peaks) == 0:
        peaks = np.array([[gray.shape[0] // 2, gray.shape[1] // 2]])
    return [(int(y), int(x), 0) for y, x in peaks]


def _check_args(args: argparse.Namespace) -> None:
    """Arguments that cannot work, refused before torch and the model load (seconds)."""
    from napari_seem.loading import official_entry

    if args.image is not None and not Path(args.image).is_file():
        raise ValueError(f"--image: file not found: {args.image}")
    if args.checkpoint is not None and not Path(args.checkpoint).expanduser().is_file() \
            and official_entry(args.checkpoint) is None:
        raise ValueError(f"--checkpoint: file not found: {args.checkpoint}")
    if args.clicks < 0 or args.threads < 1:
        raise ValueError(f"--clicks must be >= 0 and --threads >= 1, got {args.clicks} and {args.threads}")
    if not args.text.strip():
        raise ValueError("--text must be a class name, e.g. 'nucleus'")


def run_demo(args: argparse.Namespace) -> dict:
    _check_args(args)
    plane, truth, source = _load_image(args.image)
    import tifffile
    import torch

    from napari_seem.cli.batch import everything_strategy
    from napari_seem.engine import SeemPredictor
    from napari_seem.engine.conversion import mask_iou
    from napari_seem.evaluation.instances import matched_ious
    from napari_seem.prompts import Box, ObjectPrompt, Point

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, weights = _load_model(args)
    predictor = SeemPredictor(model)

    start = time.perf_counter()
    predictor.set_image(plane, channels=None if plane.ndim == 2 or plane.shape[-1] in (3, 4) else 0)
    timings = {"encode_s": time.perf_counter() - start}
    shape = predictor.prepared.original_shape
    clicked = np.zeros(shape, np.uint16)
    objects, click_times = [], []
    for number, (y, x, truth_id) in enumerate(_click_points(plane, truth, args.clicks), start=1):
        start = time.perf_counter()
        result = predictor.predict(ObjectPrompt(points=[Point(y, x)]))[0]
        click_times.append(time.perf_counter() - start)
        clicked[result.mask & (clicked == 0)] = number  # earlier objects are never overwritten
        row = {"label": number, "click_yx": [y, x], "pixels": int(result.mask.sum()), "score": round(result.score, 3)}
        if truth_id:
            row["iou"] = round(mask_iou(result.mask, truth == truth_id), 3)
        objects.append(row)
    timings["click_decode_s"] = float(np.median(click_times)) if click_times else 0.0
    boxed = np.zeros(shape, np.uint16)
    for row in objects if truth is not None else []:
        target = truth == truth[tuple(row["click_yx"])]  # the clicked nucleus
        ys, xs = np.nonzero(target)
        result = predictor.predict(ObjectPrompt(boxes=[Box(ys.min(), xs.min(), ys.max(), xs.max())]))[0]
        boxed[result.mask & (boxed == 0)] = row["label"]
        row["box_yxyx"] = [int(ys.min()), int(xs.min()), int(ys.max()), int(xs.max())]
        row["box_iou"] = round(mask_iou(result.mask, target), 3)

    start = time.perf_counter()
    texted = predictor.predict(ObjectPrompt(text=args.text))[0]
    timings["text_decode_s"] = time.perf_counter() - start
    start = time.perf_counter()
    strategy = everything_strategy(args.everything, args)
    everything = predictor.segment_everything([args.text], strategy=strategy, min_area=10 if strategy == "points" else 0)
    timings["everything_s"] = time.perf_counter() - start

    tifffile.imwrite(out_dir / "labels_clicks.tif", clicked)
    if truth is not None:
        tifffile.imwrite(out_dir / "labels_boxes.tif", boxed)
    tifffile.imwrite(out_dir / "labels_text.tif", texted.mask.astype(np.uint8))
    tifffile.imwrite(out_dir / "labels_everything.tif", everything.labels.astype(np.uint16))
    _write_overlay(predictor.prepared, clicked, everything.labels, out_dir / "overlay.png")
    report = {
        "image": source,
        "image_shape": list(shape),
        "model_input_shape": list(predictor.prepared.model_shape),
        "weights": weights,
        "clicks": objects,
        "text": {"prompt": args.text, "pixels": int(texted.mask.sum()), "score": round(texted.score, 3)},
        "everything": {"vocabulary": [args.text], "strategy": strategy, "instances": len(everything)},
        "timings": {k: round(v, 4) for k, v in timings.items()},
        "threads": args.threads,
    }
    if truth is not None:
        ious = [o["iou"] for o in objects]
        report["ground_truth"] = {
            "objects": int(len(np.unique(truth[truth > 0]))),
            "clicked_mean_iou": round(float(np.mean(ious)), 3) if ious else None,
            "boxed_mean_iou": round(float(np.mean([o["box_iou"] for o in objects])), 3) if objects else None,
            "text_iou_with_all_objects": round(mask_iou(texted.mask, truth > 0), 3),
            "everything_mean_matched_iou": round(float(np.mean(matched_ious(everything.labels, truth))), 3),
        }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _write_overlay(prepared, clicked: np.ndarray, everything: np.ndarray, path: Path) -> None:
    """Side by side: the clicked objects and segment-everything over the image as the model saw it."""
    from skimage import io
    from skimage.color import label2rgb
    from skimage.transform import resize

    rgb = resize(prepared.rgb.transpose(1, 2, 0), clicked.shape, order=1, preserve_range=True) / 255.0
    panels = [label2rgb(labels, image=rgb, alpha=0.4, bg_label=0) for labels in (clicked, everything)]
    gap = np.ones((clicked.shape[0], 4, 3))
    io.imsave(path, (np.concatenate([panels[0], gap, panels[1]], axis=1) * 255).astype(np.uint8),
              check_contrast=False)
