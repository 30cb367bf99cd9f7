"""Our prompt paths against the official-style paths they replace, in one process, parity weights.

Focal-T v1 with the parity weights (the deterministic fill of ``$SEEM_PARITY_FIXTURES/../fill_weights.py``),
fp32, ``--threads`` threads, a 512x512 image (the fixtures' coins image, resized). Prints medians and
minima (after one warm-up) of:

* image encoding: ours (backbone + pixel decoder + the decoder's prompt-independent key/values)
  and the official-style encode (:mod:`official_style`), with GFLOP and GFLOP/s next to a
  2048^3 fp32 matmul measured in the same run;
* (a) one click, ours: cached features and key/values, the prompt's 3 queries only;
  (b) the official-style decoder: key/values recomputed, all 101 object queries decoded, a
  full-resolution mask at every layer; (c) the official demo path: encode + (b) per click;
* (d) a refinement round with memory (previous mask), ours and official style;
* (e) a text prompt through the engine with a cached vocabulary, the official-style grounding
  decode, and one class name through the 81 prompt templates (what the vocabulary cache saves);
  and the ratios of the official-style paths to ours, of the medians and of the minima (the
  minima are the better guide when other jobs share the CPU).

Before timing, ours and the official-style paths run the parity fixtures (b1 click, e memory
round, c text, a_generic encoder maps) and the worst errors are printed against the parity test's
tolerance (max abs error <= 1e-4 x max |reference|).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_official_paths.py [--threads 2] [--repeats 7]
        [--only encode prompts text] [--skip-parity]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "model"))  # the parity helpers

from official_style import (  # noqa: E402
    official_backbone, official_click, official_decode, official_encode, official_pixel_decoder,
)
from parity import Comparer, filled_state_dict, find_shared_input, fixture_paths, load_fixture  # noqa: E402
from timing import run_seconds  # noqa: E402

from napari_seem.engine import SeemPredictor  # noqa: E402
from napari_seem.model import build_seem, load_checkpoint  # noqa: E402
from napari_seem.model.postprocess import grounding_similarity, select_spatial  # noqa: E402
from napari_seem.prompts import ObjectPrompt  # noqa: E402

SIZE = 512
TEXT = "coin"


# ---------------------------------------------------------------------------------------------- helpers
def gflop(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops() / 1e9


def matmul_gflops(repeats: int) -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / statistics.median(run_seconds(lambda: a @ b, repeats)) / 1e9


def bool_masks(array: np.ndarray) -> torch.Tensor:
    """Fixture prompt masks ``[..., N, H, W]`` float 0/1 -> bool ``[N, H, W]``."""
    m = torch.from_numpy(array) > 0.5
    return m.reshape(-1, *m.shape[-2:])


def square(center: tuple[int, int], size: int) -> torch.Tensor:
    """Bool ``[1, size, size]`` with a 3x3 square at ``center`` (y, x): one click."""
    m = torch.zeros(1, size, size, dtype=torch.bool)
    m[0, center[0] - 1 : center[0] + 2, center[1] - 1 : center[1] + 2] = True
    return m


# ---------------------------------------------------------------------------------------------- paths
def our_click(model, features, pos, neg, indices, prev=None):
    """(a)/(d) ours: prompt encoding + decode of the prompt's queries on cached features."""
    prompt = model.encode_visual_prompt(features, pos, neg)
    out = model.decode(features, spatial=prompt, prev_mask=prev, spatial_query_indices=indices,
                       include_object_queries=False)
    return prompt, out, select_spatial(out, model.layout)[0]


def official_round(model, encoding, pos, neg, indices, prev=None):
    """(b) official style: memory rebuilt, all queries, full masks per layer."""
    _, out = official_click(model, encoding, pos, neg, prev_mask=prev, spatial_query_indices=indices)
    return out, select_spatial(out, model.layout)[0]


def pick_grounded(model, out, sentence) -> torch.Tensor:
    """The grounding query that best matches the sentence: its mask logits ``[h, w]``."""
    pred = out.final["queries_grounding"]
    scale = model.predictor.lang_encoder.logit_scale
    return pred.masks[0, grounding_similarity(pred.class_emb[0], sentence, scale)[:, 0].argmax()]


def our_text(model, features, text: str):
    """Text grounding on cached features, the grounding queries only."""
    grounding, sentence = model.predictor.grounding_prompt([text])
    out = model.decode(features, grounding=grounding, include_object_queries=False)
    return out, pick_grounded(model, out, sentence)


def official_text(model, encoding, text: str):
    """Text grounding, official style (all object queries, memory rebuilt, full masks per layer)."""
    grounding, sentence = model.predictor.grounding_prompt([text])
    _, out = official_decode(model, encoding, grounding=grounding)
    return out, pick_grounded(model, out, sentence)


# ---------------------------------------------------------------------------------------------- parity
def _use_vocabulary(model, fixture) -> None:
    model.set_vocabulary_embeddings(torch.from_numpy(find_shared_input(fixture, "text_embeddings")))


def _encoder_maps(cmp: Comparer, backbone, encoder_features, mask_features, multi_scale) -> None:
    for name, value in backbone.items():
        cmp(f"backbone_{name}", value)
    cmp("pixdec_transformer_encoder_features", encoder_features)
    for i, level in enumerate(multi_scale):
        cmp(f"pixdec_multi_scale_{i}", level)
    cmp("pixdec_mask_features", mask_features)


def _spatial_arrays(cmp: Comparer, out, chosen) -> None:
    spatial = out.final["queries_spatial"]
    cmp("pred_smasks", spatial.masks, per_query_axis=1)
    cmp("pred_smaskembs", spatial.mask_emb, per_query_axis=1)
    cmp("prev_mask", chosen)
    if "queries_object" in out.final:
        cmp("pred_logits", out.final["queries_object"].logits)


def parity_runs(model):
    """``(fixture name, label, run(fixture, comparer))`` for ours and the official-style paths."""
    def image(fx):
        return torch.from_numpy(find_shared_input(fx, "image").astype(np.float32))[None]

    def round_inputs(fx):
        prev = fx.arrays.get("input_prev_mask")
        return (bool_masks(fx.arrays["prompt_pos_mask"]), bool_masks(fx.arrays["prompt_neg_mask"]),
                torch.from_numpy(fx.arrays["spatial_query_sample_idx"]),
                None if prev is None else torch.from_numpy(prev))

    def encoder_ours(fx, cmp):
        x = model.preprocess(image(fx))
        backbone = model.backbone(x)
        mask_features, encoder_features, multi_scale = model.sem_seg_head.pixel_decoder(backbone)
        _encoder_maps(cmp, backbone, encoder_features, mask_features, multi_scale)

    def encoder_official(fx, cmp):
        enc = official_encode(model, image(fx))
        _encoder_maps(cmp, enc.backbone, enc.encoder_features, enc.mask_features, enc.multi_scale)

    def round_ours(fx, cmp):
        pos, neg, indices, prev = round_inputs(fx)
        prompt, out, chosen = our_click(model, model.encode(image(fx)), pos, neg, indices, prev)
        cmp("pred_pspatials", prompt.pos_embedding)
        _spatial_arrays(cmp, out, chosen)

    def round_official(fx, cmp):
        pos, neg, indices, prev = round_inputs(fx)
        _use_vocabulary(model, fx)
        out, chosen = official_round(model, official_encode(model, image(fx)), pos, neg, indices, prev)
        _spatial_arrays(cmp, out, chosen)

    def text_ours(fx, cmp):
        out, _ = our_text(model, model.encode(image(fx)), fx.meta["text"])
        cmp("pred_gmasks", out.final["queries_grounding"].masks, per_query_axis=1)
        cmp("pred_gtexts", out.final["queries_grounding"].class_emb, per_query_axis=1)

    def text_official(fx, cmp):
        _use_vocabulary(model, fx)
        out, _ = official_text(model, official_encode(model, image(fx)), fx.meta["text"])
        cmp("pred_gmasks", out.final["queries_grounding"].masks, per_query_axis=1)
        cmp("pred_logits", out.final["queries_object"].logits)

    return [
        ("a_generic", "encode, ours", encoder_ours),
        ("a_generic", "encode, official style", encoder_official),
        ("b1_interactive_point", "(a) click, ours", round_ours),
        ("b1_interactive_point", "(b) click, official style", round_official),
        ("e_interactive_round2_memory", "(d) round with memory, ours", round_ours),
        ("e_interactive_round2_memory", "(d) round with memory, official style", round_official),
        ("c_text_grounding", "(e) text, ours", text_ours),
        ("c_text_grounding", "(e) text, official style", text_official),
    ]


def check_parity(model) -> bool:
    """Run the parity fixtures through every path and print the worst errors; True if all match."""
    fixtures = {p.stem: p for p in fixture_paths()}
    all_ok = True
    print("parity with the official fixtures (tolerance: max abs err <= 1e-4 x max |reference| per array)")
    for name, label, run in parity_runs(model):
        if name not in fixtures:
            print(f"  {label:42s} fixture {name} missing: NOT checked")
            all_ok = False
            continue
        cmp = Comparer(load_fixture(fixtures[name]))
        with torch.no_grad():
            run(cmp.fixture, cmp)
        worst = max(cmp.results, key=lambda c: c.rel_err)
        max_abs = max(c.max_abs_err for c in cmp.results)
        verdict = "match" if not cmp.problems else "MISMATCH: " + "; ".join(cmp.problems)
        all_ok &= not cmp.problems
        print(f"  {label:42s} {name:28s} {len(cmp.results):2d} arrays, worst rel err {worst.rel_err:.1e} "
              f"({worst.name}), max abs err {max_abs:.1e}: {verdict}")
    model.set_vocabulary_embeddings(None)
    return all_ok


# ---------------------------------------------------------------------------------------------- timing
class Table:
    """Collects ``(median s, min s, GFLOP)`` per row and prints them."""

    def __init__(self, repeats: int) -> None:
        self.repeats = repeats
        self.rows: dict[str, tuple[float, float, float | None]] = {}

    def time(self, label: str, fn, repeats: int | None = None, count_flops: bool = True) -> None:
        times = run_seconds(fn, repeats or self.repeats)
        self.rows[label] = (statistics.median(times), min(times), gflop(fn) if count_flops else None)
        median, fastest, g = self.rows[label]
        flops = "" if g is None else f"{g:8.1f} {g / median:8.1f}"
        print(f"  {label:58s} {1e3 * median:9.1f} {1e3 * fastest:9.1f} {flops}", flush=True)

    def median(self, label: str) -> float:
        return self.rows[label][0]

    def ratio(self, slow: str, fast: str) -> str:
        (slow_med, slow_min, _), (fast_med, fast_min, _) = self.rows[slow], self.rows[fast]
        return f"{slow_med / fast_med:6.2f}x {slow_min / fast_min:6.2f}x"


def timing_image(fixture_dir_paths) -> torch.Tensor:
    """The fixtures' coins image ``[1, 3, 512, 512]`` (0..255), resized bilinearly."""
    generic = next((p for p in fixture_dir_paths if p.stem == "a_generic"), None)
    if generic is None:
        raise SystemExit("the a_generic parity fixture is needed for the timing image")
    image = torch.from_numpy(load_fixture(generic).arrays["image"].astype(np.float32))[None]
    return F.interpolate(image, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 255)


def time_encoding(model, image, table: Table) -> None:
    x = model.preprocess(image)
    table.time("encode, ours (backbone + pixel decoder + key/values)", lambda: model.encode(image))
    table.time("  backbone, ours", lambda: model.backbone(x))
    res = model.backbone(x)
    table.time("  pixel decoder, ours", lambda: model.sem_seg_head.pixel_decoder(res))
    table.time("  backbone + pixel decoder, ours", lambda: model.sem_seg_head.pixel_decoder(model.backbone(x)))
    table.time("encode, official style (backbone + pixel decoder)", lambda: official_encode(model, image))
    table.time("  backbone, official style", lambda: official_backbone(model, x))
    res = official_backbone(model, x)
    table.time("  pixel decoder, official style",
               lambda: official_pixel_decoder(model.sem_seg_head.pixel_decoder, res))
    ours, official = model.encode(image), official_encode(model, image)
    pairs = [(ours.mask_features, official.mask_features)] + list(zip(ours.multi_scale, official.multi_scale))
    worst = max(float((a - b).abs().max() / b.abs().max()) for a, b in pairs)
    print(f"  ours vs official-style encoder maps at {SIZE}x{SIZE}: max abs difference {worst:.1e} x max |value|")


def time_prompts(model, image, table: Table, repeats_slow: int) -> None:
    features, encoding = model.encode(image), official_encode(model, image)
    click = square((320, 284), SIZE)  # the b1 fixture's click, scaled to 512
    none = torch.zeros_like(click)
    indices = torch.tensor([3, 36, 97])  # fixed: both paths decode the same 3 spatial queries
    table.time("(a) click, ours: cached features, prompt queries only",
               lambda: our_click(model, features, click, none, indices))
    table.time("    ours + the 101 object queries (for reference)",
               lambda: model.decode(features, spatial=model.encode_visual_prompt(features, click, none),
                                    spatial_query_indices=indices))
    table.time("(b) click, official-style decoder",
               lambda: official_round(model, encoding, click, none, indices), repeats_slow)
    table.time("(c) click, official demo path (encode + (b))",
               lambda: official_round(model, official_encode(model, image), click, none, indices), repeats_slow)
    prev = our_click(model, features, click, none, indices)[2]
    pos2 = click | square((352, 300), SIZE)
    neg2 = square((270, 230), SIZE)
    table.time("(d) round with memory, ours", lambda: our_click(model, features, pos2, neg2, indices, prev))
    table.time("(d) round with memory, official-style decoder",
               lambda: official_round(model, encoding, pos2, neg2, indices, prev), repeats_slow)
    table.time("(e) text, official-style grounding decode", lambda: official_text(model, encoding, TEXT),
               repeats_slow)
    table.time("(e) text, ours (grounding queries, cached features)", lambda: our_text(model, features, TEXT))


def time_engine_text(model, image, table: Table, repeats_slow: int) -> None:
    predictor = SeemPredictor(model)
    predictor.set_image(image[0].permute(1, 2, 0).numpy().astype(np.uint8))
    predictor.set_vocabulary([TEXT, "hand", "table"])  # computed once, then cached
    table.time("(e) text prompt through the engine, cached vocabulary",
               lambda: predictor.predict(ObjectPrompt(text=TEXT)), count_flops=False)
    encoder = model.predictor.lang_encoder
    table.time("(e) one class name through the 81 templates (uncached)",
               lambda: encoder.class_embeddings([TEXT], templates=True), repeats_slow)


CLICK = "(a) click, ours: cached features, prompt queries only"
ENCODE = "encode, ours (backbone + pixel decoder + key/values)"
RATIOS = [  # (what, slower row, faster row)
    ("(b) official-style decoder / (a) click", "(b) click, official-style decoder", CLICK),
    ("(c) official demo path / (a) click", "(c) click, official demo path (encode + (b))", CLICK),
    ("(d) official-style round / ours", "(d) round with memory, official-style decoder", "(d) round with memory, ours"),
    ("(e) official-style text decode / ours", "(e) text, official-style grounding decode",
     "(e) text, ours (grounding queries, cached features)"),
    ("official-style encode / our encode", "encode, official style (backbone + pixel decoder)", ENCODE),
    ("official-style encode / our backbone + pixel decoder", "encode, official style (backbone + pixel decoder)",
     "  backbone + pixel decoder, ours"),
]
PARTS = ("encode", "prompts", "text")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of the fast paths (median, min)")
    parser.add_argument("--repeats-slow", type=int, default=5, help="timed runs of the official-style paths")
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--only", choices=PARTS, nargs="+", default=list(PARTS), help="timed parts to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = fixture_paths()
    if not paths:
        raise SystemExit("parity fixtures not found: set SEEM_PARITY_FIXTURES (see tests/model/parity.py)")
    model = build_seem("focalt_v1")
    load_checkpoint(model, filled_state_dict(model))
    print(f"focalt_v1, parity weights, fp32, {torch.get_num_threads()} threads, {SIZE}x{SIZE}, torch {torch.__version__}, "
          f"load average {os.getloadavg()[0]:.2f}")
    parity_ok = None if args.skip_parity else check_parity(model)
    image = timing_image(paths)
    table = Table(args.repeats)
    with torch.no_grad():
        print(f"reference fp32 matmul 2048^3: {matmul_gflops(args.repeats):.0f} GFLOP/s")
        print(f"  {'path':58s} {'median ms':>9s} {'min ms':>9s} {'GFLOP':>8s} {'GFLOP/s':>8s}")
        if "encode" in args.only:
            time_encoding(model, image, table)
        if "prompts" in args.only:
            time_prompts(model, image, table, args.repeats_slow)
        if "text" in args.only:
            time_engine_text(model, image, table, args.repeats_slow)
    print("ratios (of medians, and of minima)")
    for what, slow, fast in RATIOS:
        if slow in table.rows and fast in table.rows:
            print(f"  {what:54s} {table.ratio(slow, fast)}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}; outputs match the fixtures: "
          f"{'not checked' if parity_ok is None else parity_ok}")


if __name__ == "__main__":
    main()
