"""Engine latencies on focal-T at 512x512, fp32 on CPU, random weights: what a user waits for.

Prints medians (after one warm-up) of:
* one click on an encoded image (``SeemPredictor.predict`` with one ``Point``);
* one refinement round with memory (two clicks, ``previous=`` the first answer);
* one text prompt;
* one propagation step for 1 and for 10 objects, with both frames' features cached (decode only)
  and with the new frame read and encoded (what streaming through a stack costs per frame), next
  to a frame's encode, and what each object beyond the first adds to a step, as a share of it;
and the peak RSS (``resource.getrusage``) while 10 objects are propagated through ``--frames``
frames of a lazily generated 512x512 uint16 dask array, with the session's feature cache bounded.
The lost thresholds are off (``lost_iou=0, lost_score=0``) so that random weights keep every object.

Before each frame's encode the session hands the memory freed by earlier frames back to the system
(``engine.heap.release_free_memory``, glibc's ``malloc_trim``); without it glibc keeps the freed
feature maps and the RSS creeps up with the frame count. With it the RSS levels off once the cache
is full, apart from the stored results (a bool mask and ``[h, w]`` logits per object and frame),
which grow and are printed.

    .venv/bin/python benchmarks/bench_engine.py [--frames 100] [--threads 2] [--repeats 5]
    .venv/bin/python benchmarks/bench_engine.py --only streaming    # the peak RSS of the streaming run alone
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np
import torch

from timing import median_seconds, run_seconds
from napari_seem.engine import SeemPredictor, VideoSession
from napari_seem.engine.image import prepare_image
from napari_seem.model import build_seem
from napari_seem.prompts import ObjectPrompt, Point

SIZE = 512


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def results_mib(session: VideoSession) -> float:
    """Memory held by the session's stored results (masks and logits)."""
    held = sum(r.mask.nbytes + r.logits.numel() * r.logits.element_size()
               for per_frame in session.results.values() for r in per_frame.values())
    return held / 2**20


def random_stack(frames: int):
    """``(frames, 512, 512)`` uint16 dask array, one chunk per frame, generated when read (seeded)."""
    import dask.array as da

    def block(block_id=None):
        rng = np.random.default_rng(block_id[0])
        return rng.integers(0, 4096, (1, SIZE, SIZE), dtype=np.uint16)

    return da.map_blocks(block, chunks=((1,) * frames, (SIZE,), (SIZE,)), dtype=np.uint16)


def clicks(count: int) -> dict[int, ObjectPrompt]:
    """``count`` single-click objects on a grid over the image."""
    side = int(np.ceil(np.sqrt(count)))
    step = SIZE // (side + 1)
    return {i + 1: ObjectPrompt(points=[Point(step * (1 + i // side), step * (1 + i % side))]) for i in range(count)}


def prompt_latencies(predictor: SeemPredictor, repeats: int) -> None:
    predictor.set_image(np.random.default_rng(0).integers(0, 4096, (SIZE, SIZE), dtype=np.uint16))
    click = ObjectPrompt(points=[Point(256, 256)])
    first = predictor.predict(click)[0]
    second = ObjectPrompt(points=[Point(256, 256), Point(300, 280, positive=False)])
    print(f"click, cached features:         {1000 * median_seconds(lambda: predictor.predict(click), repeats):7.0f} ms")
    round_s = median_seconds(lambda: predictor.predict([second], previous=[first]), repeats)
    print(f"refinement round with memory:   {1000 * round_s:7.0f} ms")
    text_s = median_seconds(lambda: predictor.predict(ObjectPrompt(text="cell")), repeats)
    print(f"text prompt ('cell'):           {1000 * text_s:7.0f} ms")


def step_latencies(predictor: SeemPredictor, repeats: int) -> None:
    """Per-step propagation cost for 1 and 10 objects, and each extra object's share of a frame's encode."""
    stack = random_stack(2)
    image = torch.from_numpy(prepare_image(np.asarray(stack[0])).rgb)[None]
    with torch.no_grad():
        encodes = run_seconds(lambda: predictor.model.encode(image), repeats)
    encode = statistics.median(encodes)
    print(f"frame encode (model.encode):     {1000 * encode:7.0f} ms (min {1000 * min(encodes):.0f} ms)")
    decode_only = {}
    for count in (1, 10):
        session = VideoSession(predictor, stack, lost_iou=0.0, lost_score=0.0, scale_to_objects=False)  # 512x512 frames
        session.add_objects(0, clicks(count))
        session.prefetch(1)
        cached = median_seconds(lambda: list(session.propagate(stop=1)), repeats)

        def with_encode() -> None:
            session.clear_cache()
            session.prefetch(0)  # the previous frame is cached while streaming; the new one is not
            start = time.perf_counter()
            list(session.propagate(stop=1))
            durations.append(time.perf_counter() - start)

        durations: list[float] = []
        for _ in range(repeats + 1):
            with_encode()
        encoded = statistics.median(durations[1:])
        decode_only[count] = cached
        print(f"propagation step, {count:2d} object(s): {1000 * cached:7.0f} ms decode only, "
              f"{1000 * encoded:7.0f} ms with the frame's encode")
    extra = (decode_only[10] - decode_only[1]) / 9
    print(f"each extra object in a step:     {1000 * extra:7.1f} ms = {100 * extra / encode:.1f}% of a frame's encode "
          f"({100 * extra / min(encodes):.1f}% of its fastest)")


def streaming_run(predictor: SeemPredictor, frames: int, cache: int) -> None:
    session = VideoSession(predictor, random_stack(frames), max_cached_frames=cache, lost_iou=0.0, lost_score=0.0,
                           scale_to_objects=False)  # 512x512 frames, whatever random weights answer
    session.add_objects(0, clicks(10))
    before = peak_rss_mib()
    checkpoints = {min(10, frames - 1), (frames - 1) // 2, frames - 1}
    times, start = [], time.perf_counter()
    for result in session.propagate("forward"):
        times.append(time.perf_counter() - start)
        if result.frame in checkpoints:
            print(f"  frame {result.frame:4d}: peak RSS {peak_rss_mib():7.0f} MiB, cache {len(session.cached_frames)} "
                  f"frames, results {results_mib(session):5.0f} MiB, {len(result.results)} objects carried")
        start = time.perf_counter()
    print(f"streaming {frames} frames, 10 objects: median {1000 * statistics.median(times):.0f} ms per frame, "
          f"peak RSS {before:.0f} MiB before the run -> {peak_rss_mib():.0f} MiB after "
          f"(max_cached_frames={cache}, {session.frame_reads} frame reads)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100, help="frames of the streaming run (default 100)")
    parser.add_argument("--cache", type=int, default=8, help="max_cached_frames of the streaming run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", default="focalt_v1")
    parser.add_argument("--only", choices=("prompts", "steps", "streaming"),
                        help="run one part (e.g. 'streaming' for a peak RSS of the streaming run alone)")
    args = parser.parse_args()
    import dask

    dask.config.set(scheduler="synchronous")  # frame reads on this thread: torch keeps --threads cores
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    predictor = SeemPredictor(build_seem(args.variant))
    print(f"{args.variant}, RANDOM weights, fp32, {args.threads} threads, {SIZE}x{SIZE}, torch {torch.__version__}")
    print(f"peak RSS after building the model: {peak_rss_mib():.0f} MiB")
    if args.only in (None, "prompts"):
        prompt_latencies(predictor, args.repeats)
    if args.only in (None, "steps"):
        step_latencies(predictor, args.repeats)
    if args.only in (None, "streaming"):
        streaming_run(predictor, args.frames, args.cache)


if __name__ == "__main__":
    main()
