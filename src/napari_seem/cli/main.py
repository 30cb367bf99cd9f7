"""``napari-seem`` command line.

``napari-seem demo``: encode a sample microscopy image once, segment it from a click, a scribble and a
text prompt, and write the masks (TIFF), an overlay (PNG) and a JSON report with timings. Until the
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


def _to_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Percentile-stretch any 2D/RGB image to uint8 RGB (1st-99.8th percentile -> 0..255)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] in (3, 4):
        image = image[..., :3]
    elif image.ndim != 2:
        raise ValueError(f"the demo takes a 2D gray or RGB image, got shape {image.shape}")
    low, high = np.percentile(image, (1, 99.8))
    scaled = np.clip((image.astype(np.float32) - low) / max(float(high - low), 1e-6), 0, 1) * 255
    scaled = scaled.astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=-1) if scaled.ndim == 2 else scaled


def run_demo(args: argparse.Namespace) -> dict:
    import tifffile
    import torch

    from napari_seem.model import build_seem, load_checkpoint
    from napari_seem.model.postprocess import grounding_similarity, resize_mask_logits, select_spatial

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw, source = _load_image(args.image)
    rgb = _to_rgb_uint8(raw)
    height, width = rgb.shape[:2]

    torch.manual_seed(0)
    model = build_seem(args.variant)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
        weights = f"official checkpoint {args.checkpoint}"
    else:
        weights = "RANDOM initialisation (torch seed 0): outputs show the pipeline runs, not a real segmentation"

    image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    timings = {}
    with torch.no_grad():
        start = time.perf_counter()
        features = model.encode(image)
        timings["encode_s"] = time.perf_counter() - start

        click = torch.zeros(1, height, width, dtype=torch.bool)
        cy, cx = height // 2, width // 2
        click[0, cy - 1 : cy + 2, cx - 1 : cx + 2] = True
        start = time.perf_counter()
        prompt = model.encode_visual_prompt(features, click)
        out = model.decode(features, spatial=prompt, include_object_queries=False)
        logits, _, _ = select_spatial(out, model.layout.name)
        timings["click_decode_s"] = time.perf_counter() - start
        click_mask = resize_mask_logits(logits, features.padded_size, features.image_size)[0, 0] > 0

        start = time.perf_counter()
        grounding, sentence = model.grounding_prompt([args.text], features)
        out = model.decode(features, grounding=grounding, include_object_queries=False)
        pred = out.final["queries_grounding"]
        best = int(grounding_similarity(pred.class_emb[0], sentence, model.predictor.lang_encoder.logit_scale).argmax())
        timings["text_decode_s"] = time.perf_counter() - start
        text_mask = resize_mask_logits(pred.masks[:, best : best + 1], features.padded_size, features.image_size)[0, 0] > 0

    labels = np.zeros((height, width), np.uint16)
    labels[text_mask.numpy()] = 2
    labels[click_mask.numpy()] = 1
    tifffile.imwrite(out_dir / "labels.tif", labels)
    _write_overlay(rgb, labels, out_dir / "overlay.png")
    report = {
        "image": source,
        "image_shape": [height, width],
        "variant": args.variant,
        "weights": weights,
        "prompts": {"click_yx": [cy, cx], "text": args.text},
        "label_pixels": {"click (label 1)": int((labels == 1).sum()), "text (label 2)": int((labels == 2).sum())},
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "threads": args.threads,
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    return report


def _write_overlay(rgb: np.ndarray, labels: np.ndarray, path: Path) -> None:
    from skimage import io
    from skimage.color import label2rgb

    overlay = label2rgb(labels, image=rgb, alpha=0.4, bg_label=0)
    io.imsave(path, (overlay * 255).astype(np.uint8), check_contrast=False)


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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = args.func(args)
    except (ValueError, OSError) as err:
        print(f"napari-seem: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
