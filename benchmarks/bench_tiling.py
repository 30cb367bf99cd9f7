"""Large planes by tiling: a click (one tile encoded) against segment-everything over the whole plane.

    python benchmarks/bench_tiling.py [--model tiny|default_tiny] [--size 4096] [--source numpy|zarr]

A synthetic uint16 plane (noise and a jittered lattice of nuclei, radius 6-14 px) of ``size`` x
``size``; random weights (torch seed 0). Each phase runs in a fresh process so that its peak
resident memory (``ru_maxrss``) is its own (``peak_mib_before``: after loading the model and
opening the plane): ``click`` (the first click encodes its tile and samples
the plane's normalisation; then a click on the same tile, a click on another tile), ``everything``
(every tile, stitched) and, for comparison, ``whole`` (SeemPredictor: the plane shrunk to 512).
With ``--source zarr`` the plane is read from a zarr array on disk (chunks 512 x 512) and never
loaded whole. Prints one line per phase and a JSON summary, with wall and process CPU seconds and
the load average (on a shared machine wall times depend on it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TILE, HALO = 512, 64


def synthetic_plane(size: int, seed: int = 0) -> np.ndarray:
    """uint16 ``[size, size]``: background ~ 300 with noise, nuclei ~ 2500 on a jittered 48 px lattice."""
    from skimage.draw import disk

    rng = np.random.default_rng(seed)
    plane = rng.normal(300, 40, (size, size)).clip(0, None)
    for cy in range(24, size, 48):
        for cx in range(24, size, 48):
            y, x = cy + rng.integers(-8, 9), cx + rng.integers(-8, 9)
            plane[disk((y, x), int(rng.integers(6, 15)), shape=plane.shape)] += rng.normal(2200, 300)
    return plane.astype(np.uint16)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def open_plane(args):
    """The plane the parent wrote: loaded into memory (numpy) or opened lazily (zarr)."""
    if args.source == "numpy":
        return np.load(args.stored)
    import zarr

    return zarr.open_array(args.stored, mode="r")


class Clock:
    """Wall and process CPU seconds of a block (CPU time is less disturbed by other processes)."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_phase(args) -> dict:
    import torch

    from napari_seem.engine import SeemPredictor, TiledPredictor
    from napari_seem.model import build_seem
    from napari_seem.prompts import ObjectPrompt, Point

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_seem(args.model)
    plane = open_plane(args)
    base = peak_mib()
    out: dict = {"phase": args.phase, "peak_mib_before": round(base, 1)}
    click = ObjectPrompt(points=[Point(args.size // 2 + 5, args.size // 2 + 7)])
    if args.phase == "click":
        predictor = TiledPredictor(model, tile=TILE, halo=HALO)
        predictor.set_image(plane)
        clicks = {"first_click": click,  # samples the normalisation, encodes the tile
                  "same_tile_click": ObjectPrompt(points=[Point(args.size // 2 + 30, args.size // 2 - 20)]),
                  "other_tile_click": ObjectPrompt(points=[Point(100, 100)])}
        for name, prompt in clicks.items():
            with Clock() as clock:
                predictor.predict(prompt)
            out[name] = {"wall_s": round(clock.wall, 3), "cpu_s": round(clock.cpu, 3),
                         "tiles_encoded_so_far": predictor.tiles_encoded}
    elif args.phase == "everything":
        predictor = TiledPredictor(model, tile=TILE, halo=HALO)
        predictor.set_image(plane)
        with Clock() as clock:
            result = predictor.segment_everything(["nucleus", "cell"], object_threshold=0.0, overlap_threshold=0.0)
        out.update(wall_s=round(clock.wall, 2), cpu_s=round(clock.cpu, 2), tiles=len(predictor.grid),
                   tiles_encoded=predictor.tiles_encoded, objects=len(result))
    else:  # whole: the plane shrunk to the model input
        predictor = SeemPredictor(model, target_size=TILE)
        with Clock() as clock:
            predictor.set_image(np.asarray(plane))
        out["encode"] = {"wall_s": round(clock.wall, 3), "cpu_s": round(clock.cpu, 3)}
        with Clock() as clock:
            predictor.predict(click)
        out["click"] = {"wall_s": round(clock.wall, 3), "cpu_s": round(clock.cpu, 3)}
    out["peak_mib"] = round(peak_mib(), 1)
    out["load_average"] = [round(v, 1) for v in os.getloadavg()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny", help="model preset (random weights): tiny, default_tiny, ...")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--source", choices=("numpy", "zarr"), default="numpy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--phase", choices=("click", "everything", "whole"), help=argparse.SUPPRESS)
    parser.add_argument("--stored", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args)))
        return
    with tempfile.TemporaryDirectory() as folder:
        plane = synthetic_plane(args.size)
        if args.source == "zarr":
            import zarr

            path = str(Path(folder) / "plane.zarr")
            zarr.create_array(path, shape=plane.shape, chunks=(512, 512), dtype=plane.dtype)[:] = plane
        else:
            path = str(Path(folder) / "plane.npy")
            np.save(path, plane)
        del plane
        extra = ["--stored", path]
        summary = {"model": args.model, "size": args.size, "source": args.source, "threads": args.threads}
        for phase in ("click", "everything", "whole"):
            command = [sys.executable, __file__, "--model", args.model, "--size", str(args.size), "--source",
                       args.source, "--threads", str(args.threads), "--phase", phase, *extra]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            summary[phase] = json.loads(done.stdout.strip().splitlines()[-1])
            print(phase, summary[phase], flush=True)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
