"""``napari-seem`` command line.

``napari-seem demo``: encode a sample microscopy image once with the engine, segment it from a click and
a text prompt, and write the masks (TIFF), an overlay (PNG) and a JSON report with timings. Until the
trained default model ships, the weights are stated in the report: random initialisation (seed 0)
unless ``--checkpoint`` names an official SEEM checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def _load_image(path: str | None) -> tuple[np.ndarray, str]:
    """An image as uint8 RGB ``[H, W, 3]``, and where it came from."""
    if path is None:
        from skimage import data

        return data.cell(), "skimage.data.cell() (phase-contrast cell, bundled with scikit-image)"
    import tifffile
    from skimage import io

    array = tifffile.imread(path) if path.lower().endswith((".tif", ".tiff")) else io.imread(path)
    return array, path


def run_demo(args: argparse.Namespace) -> dict:
    import tifffile
    import torch

    from napari_seem.engine import SeemPredictor
    from napari_seem.model import build_with_weights
    from napari_seem.prompts import ObjectPrompt, Point

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    plane, source = _load_image(args.image)

    model, weights = build_with_weights(args.variant, args.checkpoint)
    predictor = SeemPredictor(model)

    timings = {}
    start = time.perf_counter()
    predictor.set_image(plane, channels=None if plane.ndim == 2 or plane.shape[-1] in (3, 4) else 0)
    timings["encode_s"] = time.perf_counter() - start
    height, width = predictor.prepared.original_shape
    click = Point(height // 2, width // 2)
    start = time.perf_counter()
    clicked = predictor.predict(ObjectPrompt(points=[click]))[0]
    timings["click_decode_s"] = time.perf_counter() - start
    start = time.perf_counter()
    texted = predictor.predict(ObjectPrompt(text=args.text))[0]
    timings["text_decode_s"] = time.perf_counter() - start

    labels = np.zeros((height, width), np.uint16)
    labels[texted.mask] = 2
    labels[clicked.mask] = 1
    tifffile.imwrite(out_dir / "labels.tif", labels)
    _write_overlay(predictor.prepared, labels, out_dir / "overlay.png")
    report = {
        "image": source,
        "image_shape": [height, width],
        "model_input_shape": list(predictor.prepared.model_shape),
        "variant": args.variant,
        "weights": weights,
        "prompts": {"click_yx": [click.y, click.x], "text": args.text},
        "objects": {
            "label 1 (click)": {"pixels": int((labels == 1).sum()), "score": round(clicked.score, 3)},
            "label 2 (text)": {"pixels": int((labels == 2).sum()), "score": round(texted.score, 3)},
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "threads": args.threads,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _write_overlay(prepared, labels: np.ndarray, path: Path) -> None:
    """The normalised image (as the model saw it, at full size) with the labels on top."""
    from skimage import io
    from skimage.color import label2rgb
    from skimage.transform import resize

    rgb = resize(prepared.rgb.transpose(1, 2, 0), labels.shape, order=1, preserve_range=True) / 255.0
    overlay = label2rgb(labels, image=rgb, alpha=0.4, bg_label=0)
    io.imsave(path, (overlay * 255).astype(np.uint8), check_contrast=False)


def run_fetch(args: argparse.Namespace) -> dict:
    from napari_seem.io.checkpoints import fetch_checkpoint, sha256_of

    path = fetch_checkpoint(args.name)
    return {"checkpoint": str(path), "sha256": sha256_of(path)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-seem", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="segment a sample image from a click and a text prompt")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--image", help="a 2D gray or RGB image (TIFF/PNG); default: a bundled sample")
    demo.add_argument("--variant", default="focalt_v1", help="model preset (default: focalt_v1)")
    demo.add_argument("--checkpoint", help="an official SEEM checkpoint matching --variant")
    demo.add_argument("--text", default="cell", help="text prompt (default: 'cell')")
    demo.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    demo.set_defaults(func=run_demo)
    fetch = sub.add_parser("fetch", help="download an official SEEM checkpoint into the cache (verified)")
    fetch.add_argument("name", help="seem_focalt_v1, seem_focall_v1, seem_focalt_v0 or seem_focall_v0")
    fetch.set_defaults(func=run_fetch)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"napari-seem: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
