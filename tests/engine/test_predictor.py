"""SeemPredictor behaviour on a tiny random-weight model: every prompt type, multi-object, memory,
determinism, caching, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.engine import SeemPredictor, prepare_image
from napari_seem.model import build_seem
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, PromptError, ReferenceRegion, Scribble

from tiny import tiny_config


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return SeemPredictor(build_seem(tiny_config()), target_size=96)


def _plane(shape=(120, 80), dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 4000).astype(dtype)


def test_prepare_image_normalises_and_resizes_any_dtype():
    for image in (_plane(), _plane(dtype=np.float32) / 7.0, _plane().astype(np.uint8)):
        prepared = prepare_image(image, target_size=96)
        assert prepared.rgb.shape == (3, 96, 64)
        assert prepared.rgb.min() >= 0 and prepared.rgb.max() <= 255 and prepared.rgb.max() > 200
        assert prepared.scale == pytest.approx(96 / 120)


def test_a_small_plane_is_enlarged_twice_at_most():
    """A 122-pixel z-slice becomes a 244-pixel input, not a 512 one: nuclei stay at the sizes the
    default model was trained on (its training images were enlarged 2x at most)."""
    small = prepare_image(_plane((120, 122)))
    assert small.model_shape == (240, 244) and small.scale == 2.0
    assert prepare_image(_plane((256, 200))).model_shape == (512, 400)  # exactly 2x: as before
    assert prepare_image(_plane((1024, 800))).model_shape == (512, 400)  # shrunk: as before
    free = prepare_image(_plane((120, 122)), max_upscale=None)
    assert free.model_shape == (504, 512)
    assert free.signature != small.signature  # a cache never mixes up the two inputs
    assert prepare_image(_plane((256, 200))).signature == prepare_image(_plane((256, 200)), max_upscale=None).signature


def test_prepare_image_multichannel_needs_a_channel_choice():
    stack = np.stack([_plane(seed=s) for s in range(5)], axis=0)  # (C, H, W)
    with pytest.raises(ValueError, match="5 channels: choose"):
        prepare_image(stack, channel_axis=0)
    one = prepare_image(stack, channel_axis=0, channels=2, target_size=96)
    assert np.allclose(one.rgb[0], one.rgb[1])
    three = prepare_image(stack, channel_axis=0, channels=[0, 1, 4], target_size=96)
    assert not np.allclose(three.rgb[0], three.rgb[2])


def test_every_prompt_type_gives_a_full_resolution_mask(predictor):
    plane = _plane()
    predictor.set_image(plane)
    mask = np.zeros(plane.shape, bool)
    mask[40:60, 30:50] = True
    prompts = [
        ObjectPrompt(points=[Point(50, 40), Point(10, 10, positive=False)]),
        ObjectPrompt(boxes=[Box(30, 20, 70, 60)]),
        ObjectPrompt(scribbles=[Scribble(((20, 20), (40, 60)), width=4)]),
        ObjectPrompt(masks=[MaskPrompt(mask)]),
        ObjectPrompt(text="a cell"),
        ObjectPrompt(reference=ReferenceRegion(_plane(seed=3), mask)),
    ]
    results = predictor.predict(prompts)
    assert len(results) == len(prompts)
    for r in results:
        assert r.mask.shape == plane.shape and r.mask.dtype == bool
        assert r.logits.shape == (24, 16)
        assert 0.0 <= r.score <= 1.0


def test_same_image_is_not_re_encoded_and_results_are_deterministic(predictor):
    plane = _plane(seed=1)
    predictor.set_image(plane)
    features = predictor.features
    predictor.set_image(plane.copy())
    assert predictor.features is features
    prompt = ObjectPrompt(points=[Point(60, 40)])
    a, b = predictor.predict(prompt)[0], predictor.predict(prompt)[0]
    assert np.array_equal(a.mask, b.mask) and torch.equal(a.logits, b.logits)


def test_previous_result_is_carried_as_memory(predictor):
    predictor.set_image(_plane(seed=2))
    prompt = ObjectPrompt(points=[Point(60, 40)])
    first = predictor.predict(prompt)[0]
    fake_previous = type(first)(first.mask, torch.full_like(first.logits, -8.0).index_fill(0, torch.tensor([3, 4]), 8.0),
                                first.score)
    again = predictor.predict([prompt], previous=[fake_previous])[0]
    assert not torch.allclose(again.logits, first.logits)


def test_many_objects_in_one_call_beyond_one_pass(predictor):
    predictor.set_image(_plane(seed=4, shape=(96, 96)))
    prompts = [ObjectPrompt(points=[Point(5 + 2 * i, 5 + 2 * i)]) for i in range(40)]
    results = predictor.predict(prompts)
    assert len(results) == 40
    # Object 0's answer does not depend on the other objects in its pass.
    alone = predictor.predict(prompts[:1])[0]
    assert torch.allclose(alone.logits, results[0].logits, atol=1e-4)


def test_vocabulary_labels_results(predictor):
    predictor.set_image(_plane(seed=5))
    predictor.set_vocabulary(["nucleus", "cell"])
    try:
        result = predictor.predict(ObjectPrompt(points=[Point(60, 40)]))[0]
        assert result.class_name in ("nucleus", "cell", None)  # None: background won (never named so)
        assert result.class_probabilities.shape == (3,)
        if result.class_name is not None:
            assert 0.0 < result.class_score <= 1.0
    finally:
        predictor.set_vocabulary(None)


@pytest.mark.parametrize(
    "prompt, message",
    [
        (ObjectPrompt(points=[Point(500, 5)]), "object 0: .*outside the 120x80 image"),
        (ObjectPrompt(), "object 0: empty prompt"),
        (ObjectPrompt(boxes=[Box(10, 10, 10, 30)]), "non-zero height"),
    ],
)
def test_bad_prompts_are_named(predictor, prompt, message):
    predictor.set_image(_plane())
    with pytest.raises(PromptError, match=message):
        predictor.predict(prompt)


def test_predict_before_set_image_is_a_clear_error():
    with pytest.raises(RuntimeError, match="set_image"):
        SeemPredictor(build_seem(tiny_config())).predict(ObjectPrompt(points=[Point(1, 1)]))


# ------------------------------------------------------------------------------------- text + visual
def test_text_composes_with_a_visual_prompt(predictor):
    predictor.set_image(_plane(seed=6))
    click = [Point(60, 40)]
    alone = predictor.predict(ObjectPrompt(points=click))[0]
    nucleus = predictor.predict(ObjectPrompt(points=click, text="nucleus"))[0]
    debris = predictor.predict(ObjectPrompt(points=click, text="debris"))[0]
    assert not torch.allclose(alone.logits, nucleus.logits, atol=1e-3)
    assert not torch.allclose(nucleus.logits, debris.logits, atol=1e-4)
    # The visual prompt still decides: the composed result is the same as the model-level decode
    # with the grounded layout, selected by the click's embedding.
    from napari_seem.model.layout import V1_GROUNDED
    from napari_seem.model.postprocess import select_spatial

    model, features = predictor.model, predictor.features
    pos = torch.zeros(1, *predictor.prepared.model_shape, dtype=torch.bool)
    y, x = round(60 * predictor.prepared.scale), round(40 * predictor.prepared.scale)
    pos[0, y - 1 : y + 2, x - 1 : x + 2] = True
    with torch.no_grad():
        generator = torch.Generator().manual_seed(predictor.seed)
        spatial = model.encode_visual_prompt(features, pos, torch.zeros_like(pos), generator=generator)
        grounding, _ = model.grounding_prompt(["nucleus"], features)
        out = model.decode(features, spatial=spatial, grounding=grounding, generator=generator, layout=V1_GROUNDED)
        assert torch.allclose(select_spatial(out, V1_GROUNDED)[0][0, 0], nucleus.logits, atol=1e-5)
        plain = model.decode(features, spatial=spatial, generator=torch.Generator().manual_seed(predictor.seed))
        assert torch.allclose(select_spatial(plain, "v1")[0][0, 0], alone.logits, atol=1e-5)


def test_visual_only_objects_are_unchanged_by_text_objects_in_the_same_call(predictor, monkeypatch):
    predictor.set_image(_plane(seed=7))
    visual = [ObjectPrompt(points=[Point(20, 20)]), ObjectPrompt(boxes=[Box(50, 30, 90, 70)])]
    expected = predictor.predict(visual)
    calls = []
    decode = predictor.model.decode
    monkeypatch.setattr(predictor.model, "decode", lambda *a, **k: calls.append(k.get("layout")) or decode(*a, **k))
    mixed = predictor.predict([
        ObjectPrompt(points=[Point(60, 40)], text="nucleus"),
        visual[0],
        ObjectPrompt(scribbles=[Scribble(((10, 60), (30, 70)))], text="nucleus"),
        visual[1],
    ])
    for got, want in zip([mixed[1], mixed[3]], expected):
        assert torch.equal(got.logits, want.logits) and np.array_equal(got.mask, want.mask)
    # Two passes: the visual-only objects, and both "nucleus" objects together with the grounded layout.
    assert [None if layout is None else layout.name for layout in calls] == [None, "v1_grounded"]


def test_text_composes_with_a_reference_region(predictor):
    predictor.set_image(_plane(seed=8))
    mask = np.zeros((120, 80), bool)
    mask[40:60, 30:50] = True
    reference = ReferenceRegion(_plane(seed=9), mask)
    alone = predictor.predict(ObjectPrompt(reference=reference))[0]
    composed = predictor.predict(ObjectPrompt(reference=reference, text="nucleus"))[0]
    assert not torch.allclose(alone.logits, composed.logits, atol=1e-3)


# ------------------------------------------------------------------------------------- boxes
def test_box_prompt_mask_is_clipped_to_the_grown_box(predictor):
    predictor.set_image(_plane(seed=10))
    box = Box(30, 20, 69, 59)  # 40 x 40 pixels: a 10% margin is 4 pixels on each side
    saved = predictor.box_weight, predictor.box_margin
    try:
        predictor.box_weight, predictor.box_margin = 0.0, None
        unclipped = predictor.predict(ObjectPrompt(boxes=[box]))[0]
        predictor.box_margin = 0.1
        clipped = predictor.predict(ObjectPrompt(boxes=[box]))[0]
    finally:
        predictor.box_weight, predictor.box_margin = saved
    allowed = np.zeros((120, 80), bool)
    allowed[26:74, 16:64] = True
    assert unclipped.mask[~allowed].any()  # random weights spill far outside the box ...
    assert not clipped.mask[~allowed].any()  # ... which clipping removes
    assert np.array_equal(clipped.mask, unclipped.mask & allowed)
    # The memory for the next round is clipped too (held negative outside the box's cells).
    outside = torch.ones_like(clipped.logits, dtype=torch.bool)
    # Grown box rows 26..73, cols 16..63 -> model pixels x0.8 -> cells /4, one more cell each side.
    outside[4:16, 2:14] = False
    assert (clipped.logits[outside] <= -10.0).all()
    assert torch.equal(clipped.logits[~outside], unclipped.logits[~outside])


def test_box_aware_selection_is_used_only_for_box_objects(predictor, monkeypatch):
    import napari_seem.engine.predictor as engine

    predictor.set_image(_plane(seed=11))
    prompts = [ObjectPrompt(points=[Point(20, 20)]), ObjectPrompt(boxes=[Box(40, 10, 100, 70)])]
    plain = predictor.predict(prompts)
    seen = []

    def last_candidate(mask_logits, match, box, box_weight, margin):
        seen.append((mask_logits.shape, box, box_weight, margin))
        return mask_logits.shape[0] - 1, torch.zeros(mask_logits.shape[0])

    monkeypatch.setattr(engine, "select_box_aware", last_candidate)
    forced = predictor.predict(prompts)
    s = predictor.prepared.scale
    # Called once, for the box object: its 3 candidate queries at model resolution, box in model pixels.
    assert seen == [((3, 96, 64), (round(40 * s), round(10 * s), round(100 * s), round(70 * s)), 0.5, 0.1)]
    assert torch.equal(forced[0].logits, plain[0].logits)


def test_v0_mode_answers_several_objects_each_as_if_alone():
    """v0 merges the prompts of one decode into one object, so the engine decodes its objects one by
    one: two clicks at once give the masks each click gives alone."""
    torch.manual_seed(0)
    predictor = SeemPredictor(build_seem(tiny_config("v0")), target_size=64)
    predictor.set_image(_plane())
    prompts = [ObjectPrompt(points=[Point(30, 20)]), ObjectPrompt(boxes=[Box(60, 40, 100, 70)])]
    together = predictor.predict(prompts)
    for prompt, result in zip(prompts, together):
        np.testing.assert_array_equal(result.mask, predictor.predict([prompt])[0].mask)


def test_the_demo_layout_is_refused_with_the_mode_to_use():
    with pytest.raises(ValueError, match="not 'demo'.*focalt_v0"):
        SeemPredictor(build_seem(tiny_config("demo")))
