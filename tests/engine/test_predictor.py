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
        assert result.class_name in ("nucleus", "cell", "background")
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
