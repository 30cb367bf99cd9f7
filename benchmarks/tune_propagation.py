"""Propagation settings compared on a tracked time-lapse: J&F and lost tracks per setting.

Every track of frame 0 is prompted with its mask and propagated forward (the ``napari-seem eval
propagation`` protocol) once per setting of ``VideoSession``'s ``lost_iou``, ``lost_score`` and
``anchor_weight``, and with the predictor's ``keep_connected`` on and off.

    .venv/bin/python benchmarks/tune_propagation.py [--checkpoint FILE] [--frames 30]

Without ``--checkpoint``: the embedded default model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import tifffile
import torch

from napari_seem.engine import SeemPredictor
from napari_seem.evaluation.propagation import evaluate_propagation
from napari_seem.loading import load_model

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [  # (keep_connected, lost_iou, lost_score, anchor_weight)
    (True, 0.1, 0.3, 0.0),
    (True, 0.0, 0.0, 0.0),
    (True, 0.1, 0.1, 0.0),
    (True, 0.1, 0.3, 0.3),
    (False, 0.1, 0.3, 0.0),
    (False, 0.0, 0.0, 0.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "usiigaci_t98g_timelapse_pseudogt"))
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.checkpoint)
    frames = tifffile.imread(Path(args.data) / "images.tif")
    reference = tifffile.imread(Path(args.data) / "labels_tracked_pseudogt.tif")
    rows = []
    print(f"{'connected':>9} {'lost_iou':>8} {'lost_score':>10} {'anchor':>6} {'J':>6} {'F':>6} {'J&F':>6} {'lost':>5}")
    for connected, lost_iou, lost_score, anchor in SETTINGS:
        predictor = SeemPredictor(model, keep_connected=connected)
        report = evaluate_propagation(predictor, frames, reference, args.frames, lost_iou=lost_iou,
                                      lost_score=lost_score, anchor_weight=anchor)
        row = {"keep_connected": connected, "lost_iou": lost_iou, "lost_score": lost_score, "anchor_weight": anchor,
               "j": report.j, "f": report.f, "jf": report.jf, "lost_tracks": report.lost_tracks,
               "objects": report.objects}
        rows.append(row)
        print(f"{connected!s:>9} {lost_iou:>8} {lost_score:>10} {anchor:>6} {report.j:6.3f} {report.f:6.3f} "
              f"{report.jf:6.3f} {report.lost_tracks:>5}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
