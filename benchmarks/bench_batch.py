"""Batch throughput: ``napari-seem everything`` on N synthetic images, in one process vs on a local
Dask cluster, with the same number of cores; checks that the label files are identical.

    python benchmarks/bench_batch.py --images 16 --workers 2 --variant default_tiny --size 512

Prints wall times (cluster start-up and each worker's model load included), images per second and
the first-task time per worker (the model load), from the batch summaries.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_images(folder: Path, count: int, size: int) -> None:
    import tifffile

    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for index in range(count):
        rng = np.random.default_rng(index)
        plane = rng.normal(300, 40, (size, size))
        for cy, cx, r in rng.integers((10, 10, 4), (size - 10, size - 10, max(size // 12, 5)), (12, 3)):
            plane[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] += 2000
        tifffile.imwrite(folder / f"im{index:03d}.tif", np.clip(plane, 0, 65535).astype(np.uint16))


def run(images: Path, out: Path, extra: list[str], args) -> tuple[float, dict]:
    from napari_seem.cli.main import main

    start = time.perf_counter()
    code = main(["everything", str(images), "--vocabulary", "nucleus,cell", "--out", str(out), "--variant",
                 args.variant, "--target-size", str(args.target_size), "--no-progress", *extra])
    seconds = time.perf_counter() - start
    if code != 0:
        sys.exit(f"batch failed with exit status {code}")
    return seconds, json.loads((out / "summary.json").read_text())


def first_task_seconds(summary: dict) -> dict[str, float]:
    """Per worker, the time of its first task (which loads the model)."""
    first: dict[str, float] = {}
    for entry in summary["files"]:
        first.setdefault(entry["worker"], entry["seconds"])
    return first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variant", default="default_tiny")
    parser.add_argument("--target-size", type=int, default=512)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_images(root / "images", args.images, args.size)
        local_s, _ = run(root / "images", root / "local", ["--local", "--threads", str(args.workers)], args)
        cluster_s, summary = run(root / "images", root / "cluster",
                                 ["--workers", str(args.workers), "--threads", "1"], args)
        import tifffile

        same = all(np.array_equal(tifffile.imread(p), tifffile.imread(root / "cluster" / p.name))
                   for p in sorted((root / "local").glob("*.tif")))
    print(f"{args.images} images {args.size}x{args.size}, {args.variant} at {args.target_size}, "
          f"{args.workers} cores")
    print(f"  one process, {args.workers} torch threads: {local_s:.1f} s ({args.images / local_s:.2f} images/s)")
    print(f"  local cluster, {args.workers} workers x 1 thread: {cluster_s:.1f} s ({args.images / cluster_s:.2f} "
          f"images/s), first task per worker (model load): "
          + ", ".join(f"{s:.1f} s" for s in first_task_seconds(summary).values()))
    print(f"  label files identical: {same} (torch threads differ between the runs, so tiny float "
          "differences could flip a pixel; the tests compare runs at equal threads)")


if __name__ == "__main__":
    main()
