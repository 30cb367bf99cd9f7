"""What the presence decision costs in a propagation step (issue 13's budget: at most 5%).

Propagates every object of a development stack with its features already encoded (the on-disk
feature cache, filled by a first run that is not timed), so a step is the decode and what follows
it. Times, over the whole run, the step and the parts of it that only serve the presence decision:
the signals (``presence.signals``: peak, mean, area, IoU, feature similarity, appearance), the
contrast against the anchor frame (``VideoSession._contrast_ratio``) and the rule
(``VideoSession._misses``). Prints each as a share of the step; with ``--follow-motion 0.5``, also
the share of following the objects' motion (``VideoSession._moved``,
``PropagationConfig.follow_motion``, off by default), which is not part of the presence decision.

    .venv/bin/python benchmarks/bench_presence.py [--data DIR] [--kind z|time] [--checkpoint FILE] [--threads 1]
        [--follow-motion 0.5]

Defaults: the T98G time-lapse (28 cells on 512x512 frames, the heaviest step), the embedded
default model, 1 thread.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from napari_seem.engine import FeatureCache, SeemPredictor, VideoSession
from napari_seem.engine import video_steps as video_module
from napari_seem.engine.carry import PropagationConfig
from napari_seem.evaluation.propagation import load_stacks, object_anchors, object_prompt

REPO = Path(__file__).resolve().parents[1]


class Timer:
    """Adds the wall time of the calls of ``wrap(function)`` to ``seconds``."""

    def __init__(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def wrap(self, function):
        def timed(*args, **kwargs):  # a plain function: it binds as a method too
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed


def run(predictor, frames, reference, anchors, kind, cache, follow_motion=0.0) -> tuple[float, int]:
    session = VideoSession(predictor, frames, stack_kind=kind, cache=cache, max_cached_frames=len(frames) + 1,
                           config=PropagationConfig(follow_motion=follow_motion))
    by_frame: dict[int, dict] = {}
    for o, t in object_anchors(reference, anchors).items():
        by_frame.setdefault(t, {})[o] = object_prompt(reference[t] == o, "mask")
    for t, prompts in sorted(by_frame.items()):
        session.add_objects(t, prompts)
    for t in range(len(frames)):  # encoded (or read from the disk cache) before the clock starts
        session._frame(t)
    start, steps = time.perf_counter(), 0
    for _ in session.propagate("forward" if anchors == "first" else "both"):
        steps += 1
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "usiigaci_t98g_timelapse_pseudogt"))
    parser.add_argument("--kind", choices=("time", "z"), help="stack kind (default: z for a z-stack folder)")
    parser.add_argument("--checkpoint", help="a napari-seem checkpoint (default: the embedded default model)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="feature cache folder (default: a temporary one)")
    parser.add_argument("--follow-motion", type=float, default=0.0,
                        help="PropagationConfig.follow_motion (default 0: off, as in the engine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from napari_seem.loading import load_model

    model = load_model(args.checkpoint) if args.checkpoint else load_model()
    predictor = SeemPredictor(model)
    stacks, anchors = load_stacks(args.data)
    kind = args.kind or ("z" if anchors == "middle" else "time")
    name, frames, reference = stacks[0]
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(args.cache or folder)
        run(predictor, frames, reference, anchors, kind, cache, args.follow_motion)  # fills the cache; warms up
        signals, contrast, misses = Timer(), Timer(), Timer()
        video_module.signals = signals.wrap(video_module.signals)
        VideoSession._contrast_ratio = contrast.wrap(VideoSession._contrast_ratio)
        VideoSession._misses = misses.wrap(VideoSession._misses)
        motion = Timer()
        VideoSession._moved = motion.wrap(VideoSession._moved)
        total, steps = run(predictor, frames, reference, anchors, kind, cache, args.follow_motion)
    presence = signals.seconds + contrast.seconds + misses.seconds
    print(f"{name}: {steps} steps, {len(object_anchors(reference, anchors))} objects, stack kind {kind}, "
          f"{args.threads} thread(s), features cached")
    print(f"  step (decode and all):   {1000 * total / steps:8.1f} ms")
    for label, timer in (("signals", signals), ("contrast vs anchor", contrast), ("rule", misses)):
        print(f"  {label:24s} {1000 * timer.seconds / steps:8.2f} ms  {100 * timer.seconds / total:5.2f}%")
    print(f"  presence decision, all:  {1000 * presence / steps:8.2f} ms  {100 * presence / total:5.2f}% of a step")
    if args.follow_motion > 0:
        print(f"  following motion:        {1000 * motion.seconds / steps:8.2f} ms  "
              f"{100 * motion.seconds / total:5.2f}% of a step")


if __name__ == "__main__":
    main()
