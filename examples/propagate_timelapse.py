"""Propagate the manually annotated cells of frame 0 through a phase-contrast time-lapse.

Data: ``../shared/data/usiigaci_t98g_timelapse_pseudogt`` (T98G cells, 37 frames of 512x512 uint16).
Every object of ``gt_manual_frame000.tif`` is prompted on frame 0 with its mask (``MaskPrompt``),
then ``VideoSession.propagate("forward")`` carries all of them frame by frame. The script writes the
result as a (T, H, W) uint16 label TIFF (object ids = the manual GT ids) and prints, per frame, the
time and the agreement with the Usiigaci pipeline's tracked masks (``labels_tracked_pseudogt.tif``):
the mean IoU over the objects whose track exists on that frame (a lost object counts as 0). That
reference is a pipeline output, not manual ground truth: read it as agreement, not accuracy.

    .venv/bin/python examples/propagate_timelapse.py out/labels.tif --frames 3
    .venv/bin/python examples/propagate_timelapse.py out/labels.tif --checkpoint seem_focalt_v1.pt

Without ``--checkpoint`` the weights are random (torch seed 0): the run shows the pipeline and its
speed, not a segmentation. (A trained default model comes later.)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "usiigaci_t98g_timelapse_pseudogt"


class TiffFrames:
    """A multi-page TIFF as a lazy frame stack: ``shape``, ``len()`` and ``frames[t]`` read one page."""

    def __init__(self, path: Path, count: int | None = None) -> None:
        import tifffile

        self._tiff = tifffile.TiffFile(path)
        pages = len(self._tiff.pages)
        first = self._tiff.pages[0]
        self.shape = (pages if count is None else min(count, pages), *first.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        return self._tiff.pages[int(t)].asarray()


def track_ids_for(gt: np.ndarray, tracked: np.ndarray) -> dict[int, int]:
    """Each manual GT object -> the pseudo-GT track that overlaps it best on frame 0 (0: none)."""
    matches = {}
    for object_id in np.unique(gt[gt > 0]):
        under = tracked[gt == object_id]
        ids, counts = np.unique(under[under > 0], return_counts=True)
        matches[int(object_id)] = int(ids[counts.argmax()]) if ids.size else 0
    return matches


def agreement(session, frame: int, tracked: np.ndarray, matches: dict[int, int]) -> tuple[float, int]:
    """Mean IoU of our objects with their tracks on ``frame`` (tracks present there), and how many."""
    from napari_seem.engine.conversion import mask_iou

    ious = []
    for object_id, track in matches.items():
        reference = tracked == track
        if track == 0 or not reference.any():
            continue
        result = session.results.get(frame, {}).get(object_id)
        ious.append(mask_iou(result.mask, reference) if result is not None else 0.0)
    return (float(np.mean(ious)) if ious else float("nan")), len(ious)


def build_predictor(args):
    import torch

    from napari_seem.engine import SeemPredictor
    from napari_seem.model import build_with_weights

    torch.set_num_threads(args.threads)
    model, weights = build_with_weights(args.variant, args.checkpoint)
    return SeemPredictor(model), weights


def main() -> None:
    import tifffile

    from napari_seem.engine import VideoSession
    from napari_seem.prompts import MaskPrompt, ObjectPrompt

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", help="label TIFF to write, (T, H, W) uint16")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the usiigaci_t98g_timelapse_pseudogt folder")
    parser.add_argument("--checkpoint", help="an official SEEM checkpoint matching --variant")
    parser.add_argument("--variant", default="focalt_v1", help="model preset (default: focalt_v1)")
    parser.add_argument("--frames", type=int, help="propagate through the first N frames only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    frames = TiffFrames(args.data / "images.tif", args.frames)
    gt = tifffile.imread(args.data / "gt_manual_frame000.tif")
    tracked = tifffile.imread(args.data / "labels_tracked_pseudogt.tif")
    matches = track_ids_for(gt, tracked[0])
    predictor, weights = build_predictor(args)
    print(f"model: {args.variant}, weights: {weights}")
    print(f"data: {len(frames)} frames of {frames.shape[1:]}, {len(matches)} objects prompted on frame 0")

    session = VideoSession(predictor, frames)
    start = time.perf_counter()
    session.add_objects(0, {object_id: ObjectPrompt(masks=[MaskPrompt(gt == object_id)]) for object_id in matches})
    mean_iou, count = agreement(session, 0, tracked[0], matches)
    print(f"frame   0: {time.perf_counter() - start:6.2f} s (encode + {len(matches)} mask prompts in one call), "
          f"mean IoU {mean_iou:.3f} over {count} tracks")

    start = time.perf_counter()
    for result in session.propagate("forward"):
        seconds = time.perf_counter() - start
        mean_iou, count = agreement(session, result.frame, tracked[result.frame], matches)
        print(f"frame {result.frame:3d}: {seconds:6.2f} s, {len(result.results)} objects carried, "
              f"{len(result.lost)} lost here, mean IoU {mean_iou:.3f} over {count} tracks")
        start = time.perf_counter()

    labels = np.stack([session.labels(t, dtype=np.uint16) for t in range(len(frames))])
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(args.output, labels, photometric="minisblack")
    print(f"wrote {args.output}: {labels.shape} uint16, object ids = manual GT ids of frame 0")


if __name__ == "__main__":
    main()
