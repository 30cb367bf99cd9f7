"""Focal-T timing at 512x512, fp32 on CPU: image encoding and one click decode.

Prints milliseconds and achieved GFLOP/s per stage (FLOPs counted by torch's FlopCounterMode on the
same call), next to a plain fp32 matmul measured in the same run as the machine's reference peak.

    .venv/bin/python benchmarks/bench_model.py [--size 512] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from timing import median_seconds
from napari_seem.model import build_seem
from napari_seem.model.postprocess import select_spatial


def flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_peak(repeats: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    seconds = median_seconds(lambda: a @ b, repeats)
    return 2 * 2048**3 / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", default="focalt_v1")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_seem(args.variant)
    image = torch.rand(1, 3, args.size, args.size) * 255
    click = torch.zeros(1, args.size, args.size, dtype=torch.bool)
    c = args.size // 2
    click[0, c - 1 : c + 2, c - 1 : c + 2] = True

    with torch.no_grad():
        x = model.preprocess(image)
        backbone = lambda: model.backbone(x)  # noqa: E731
        res = backbone()
        pixel_decoder = lambda: model.sem_seg_head.pixel_decoder(res)  # noqa: E731
        features = model.encode(image)

        def click_decode(include_object_queries: bool):
            prompt = model.encode_visual_prompt(features, click)
            out = model.decode(features, spatial=prompt, include_object_queries=include_object_queries)
            return select_spatial(out, model.layout.name)

        stages = {
            "backbone": backbone,
            "pixel decoder": pixel_decoder,
            "encode (backbone + pixel decoder + decoder memory)": lambda: model.encode(image),
            "click decode, cached features, prompt queries only": lambda: click_decode(False),
            "click decode, cached features, with 101 object queries": lambda: click_decode(True),
        }
        peak = matmul_peak(args.repeats)
        print(f"{args.variant}, fp32, {args.threads} threads, {args.size}x{args.size}, torch {torch.__version__}")
        print(f"reference fp32 matmul 2048^3: {peak:.0f} GFLOP/s")
        print(f"{'stage':58s} {'ms':>9s} {'GFLOP':>8s} {'GFLOP/s':>8s}")
        for name, fn in stages.items():
            seconds = median_seconds(fn, args.repeats)
            gflop = flops(fn) / 1e9
            print(f"{name:58s} {seconds * 1e3:9.1f} {gflop:8.1f} {gflop / seconds:8.1f}")


if __name__ == "__main__":
    main()
