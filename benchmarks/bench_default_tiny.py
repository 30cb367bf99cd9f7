"""The ``default_tiny`` budget: fp32 weight size, 512x512 encode and one click on the CPU.

Budget (the trained default model): weights <= 25 MB including the text token table, encode
<= 150 ms, one click <= 30 ms. Prints the medians (after one warm-up) of the encode (``model.encode``
of a 512x512 image), one click through ``SeemPredictor.predict`` (what a user waits for, the image
encoded already), one refinement round with memory, and one text prompt. Speed does not depend on
the weights, so random ones are used unless ``--checkpoint`` is given.

    .venv/bin/python benchmarks/bench_default_tiny.py [--threads 2] [--repeats 20] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from timing import median_seconds
from napari_seem.engine import SeemPredictor
from napari_seem.prompts import ObjectPrompt, Point
from napari_seem.training.checkpoint import load_model

BUDGET = {"weights_mb": 25.0, "encode_ms": 150.0, "click_ms": 30.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--checkpoint", help="a trained default_tiny checkpoint (default: random weights)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, weights = load_model(args.checkpoint, "default_tiny")
    state = model.state_dict()
    size_mb = sum(t.numel() * t.element_size() for t in state.values()) / 1e6
    token_mb = model.predictor.lang_encoder.lang_encoder.token_embedding.weight.numel() * 4 / 1e6
    image = torch.rand(1, 3, 512, 512) * 255
    plane = (np.random.default_rng(0).random((512, 512)) * 4000).astype(np.uint16)
    predictor = SeemPredictor(model)
    predictor.set_image(plane)
    click = ObjectPrompt(points=[Point(256, 256)])
    first = predictor.predict(click)[0]
    refine = ObjectPrompt(points=[Point(256, 256), Point(240, 270, positive=False)])
    with torch.no_grad():
        results = {
            "weights_mb": size_mb,
            "encode_ms": 1000 * median_seconds(lambda: model.encode(image), args.repeats),
            "click_ms": 1000 * median_seconds(lambda: predictor.predict(click), args.repeats),
            "click_with_memory_ms": 1000 * median_seconds(lambda: predictor.predict(refine, previous=[first]), args.repeats),
            "text_ms": 1000 * median_seconds(lambda: predictor.predict(ObjectPrompt(text="nucleus")), args.repeats),
        }
    print(f"default_tiny, {weights}; {args.threads} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"  of the weights, the text token table is {token_mb:.1f} MB")
    for key, value in results.items():
        budget = BUDGET.get(key)
        verdict = "" if budget is None else f"  (budget {budget:g}: {'ok' if value <= budget else 'OVER'})"
        print(f"  {key:<22}{value:8.1f}{verdict}")


if __name__ == "__main__":
    main()
