"""The on-disk feature cache on focal-T at 512x512, fp32 on CPU, random weights (seed 0).

Prints: the model fingerprint (hashing the weights, once per model) and the key of an image; a
fresh encode vs a cache-hit load (read, checksums, decoder memory recomputed), as medians after one
warm-up; the store time; the entry's size on disk, with and without compression; and whether a
click and a text prompt decoded from the hit equal those from the fresh encode bit for bit.

    .venv/bin/python benchmarks/bench_feature_cache.py [--threads 2] [--repeats 3] [--dir /tmp/fc]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import torch

from timing import median_seconds

from napari_seem.engine import SeemPredictor, prepare_image
from napari_seem.engine.feature_cache import FeatureCache, encode_prepared, feature_key, model_fingerprint
from napari_seem.model import build_seem
from napari_seem.prompts import ObjectPrompt, Point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", help="cache folder (default: a temporary one, deleted after)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from skimage import data

    torch.manual_seed(0)
    model = build_seem("focalt_v1")
    prepared = prepare_image(data.camera())  # 512x512 uint8
    start = time.perf_counter()
    model_fingerprint(model)
    print(f"model fingerprint (hashes the weights once): {1e3 * (time.perf_counter() - start):.0f} ms")
    print(f"key of an image (fingerprint reused): {1e3 * median_seconds(lambda: feature_key(prepared, model), 5):.1f} ms")
    print(f"fresh encode: {1e3 * median_seconds(lambda: encode_prepared(model, prepared), args.repeats):.0f} ms")
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="napari-seem-fc-"))
    try:
        for compress in (True, False):
            _measure(FeatureCache(root / f"compress_{compress}", compress=compress), model, prepared, args.repeats)
        _check_identical(FeatureCache(root / "compress_True"), model)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


def _measure(cache: FeatureCache, model, prepared, repeats: int) -> None:
    cache.clear()
    features = encode_prepared(model, prepared)
    start = time.perf_counter()
    cache.store(model, prepared, features)
    store = time.perf_counter() - start
    load = median_seconds(lambda: cache.load(model, prepared), repeats)
    print(f"compress={cache.compress}: cache-hit load {1e3 * load:.0f} ms, store {1e3 * store:.0f} ms, "
          f"entry {cache.size_bytes() / 1e6:.1f} MB on disk")


def _check_identical(cache: FeatureCache, model) -> None:
    from skimage import data

    prompts = [ObjectPrompt(points=[Point(256, 256)]), ObjectPrompt(text="cell")]
    fresh = SeemPredictor(model)
    fresh.set_image(data.camera())
    hit = SeemPredictor(model, cache=cache)
    hit.set_image(data.camera())
    assert cache.hits >= 1
    same = all(torch.equal(a.logits, b.logits) and (a.mask == b.mask).all()
               for a, b in zip(fresh.predict(prompts), hit.predict(prompts)))
    print(f"click and text from a hit equal a fresh encode bit for bit: {same}")


if __name__ == "__main__":
    main()
