"""Text + visual composition as layout data (the official STROKE_SAMPLER.EVAL.GROUNDING hook), the
panoptic split into reusable steps, and the box-aware selection rule (pure functions)."""

from __future__ import annotations

import pytest
import torch

from napari_seem.model import build_seem
from napari_seem.model.layout import (
    DEMO,
    V0_GROUNDED,
    V1,
    V1_GROUNDED,
    TokenGroup,
    group_slices,
    self_attention_allowed,
    spatial_reads_text,
)
from napari_seem.model.postprocess import (
    assign_segments,
    box_fit,
    confident_queries,
    expand_box,
    panoptic_segments,
    select_box_aware,
    select_spatial,
)

from tiny import tiny_config


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_seem(tiny_config())


def _image(height=64, width=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, height, width, generator=g) * 255


def _click(height, width, y, x):
    m = torch.zeros(1, height, width, dtype=torch.bool)
    m[0, y - 1 : y + 2, x - 1 : x + 2] = True
    return m


# ------------------------------------------------------------------------------------- layouts
def test_grounded_layout_only_lets_spatial_queries_read_the_text():
    rows, base = dict(V1_GROUNDED.self_attention), dict(V1.self_attention)
    assert rows["queries_spatial"] == base["queries_spatial"] + ("tokens_grounding",)
    assert {k: v for k, v in rows.items() if k != "queries_spatial"} == {
        k: v for k, v in base.items() if k != "queries_spatial"
    }
    assert V1_GROUNDED.self_order == V1.self_order and V1_GROUNDED.cross == V1.cross
    assert spatial_reads_text(V1_GROUNDED) == V1_GROUNDED
    assert spatial_reads_text(DEMO) is DEMO  # the demo's object queries already read every prompt
    assert V0_GROUNDED.name == "v0_grounded" and not V0_GROUNDED.per_object_prompts


def _groups(num_objects=2, tokens_per_object=2, text_tokens=3, hidden=4):
    def group(n, object_index=None):
        x = torch.zeros(n, 1, hidden)
        return TokenGroup(x, x, torch.zeros(1, n, dtype=torch.bool), object_index)

    objects = torch.arange(num_objects)
    return {
        "queries_grounding": group(5),
        "queries_spatial": group(3 * num_objects, objects.repeat_interleave(3)[None]),
        "tokens_grounding": group(text_tokens),
        "tokens_spatial": group(tokens_per_object * num_objects, objects.repeat_interleave(tokens_per_object)[None]),
    }


def test_own_object_restriction_does_not_block_the_text():
    groups = _groups()
    s = group_slices(V1_GROUNDED.self_order, groups)
    qs, tg, ts = s["queries_spatial"], s["tokens_grounding"], s["tokens_spatial"]
    grounded = self_attention_allowed(V1_GROUNDED, groups)[0]
    assert grounded[qs, tg].all()  # every object's spatial queries read the text
    assert not grounded[tg, qs].any()  # the text does not read them (as in the official hook)
    own = grounded[qs, ts]
    assert own[:3, :2].all() and not own[:3, 2:].any()  # objects stay apart among spatial tokens
    plain = self_attention_allowed(V1, groups)[0]
    assert not plain[qs, tg].any()
    differ = grounded != plain
    differ[qs, tg] = False
    assert not differ.any()


def test_decode_with_the_grounded_layout_changes_only_what_reads_the_text(tiny):
    with torch.no_grad():
        features = tiny.encode(_image())
        prompt = tiny.encode_visual_prompt(features, _click(64, 96, 30, 40))
        grounding, _ = tiny.grounding_prompt(["a nucleus"], features)
        idx = torch.tensor([1, 5, 7])
        alone = tiny.decode(features, spatial=prompt, spatial_query_indices=idx)
        plain = tiny.decode(features, spatial=prompt, grounding=grounding, spatial_query_indices=idx)
        composed = tiny.decode(features, spatial=prompt, grounding=grounding, spatial_query_indices=idx,
                               layout=V1_GROUNDED)
    spatial = lambda out: out.final["queries_spatial"].masks  # noqa: E731
    # v1 without the hook: text and visual prompts share a pass but do not interact.
    assert torch.allclose(spatial(alone), spatial(plain), atol=1e-5)
    assert not torch.allclose(spatial(plain), spatial(composed), atol=1e-3)
    # The grounding queries and object queries are untouched by the hook.
    for group in ("queries_grounding", "queries_object"):
        assert torch.allclose(plain.final[group].masks, composed.final[group].masks, atol=1e-5)
    assert select_spatial(composed, "v1_grounded")[0].shape == (1, 1, 16, 24)
    assert torch.equal(select_spatial(composed, V1_GROUNDED)[1], select_spatial(composed, "v1")[1])
    assert tiny.layout is V1  # an override is per call


def test_layout_override_must_treat_objects_like_the_prompt_encoding(tiny):
    with torch.no_grad():
        features = tiny.encode(_image())
        prompt = tiny.encode_visual_prompt(features, _click(64, 96, 30, 40))
        with pytest.raises(ValueError, match="does not match the mode 'v1'"):
            tiny.decode(features, spatial=prompt, layout=V0_GROUNDED)
    with pytest.raises(ValueError, match="unknown layout 'v9'"):
        select_spatial(type("Out", (), {"spatial": prompt})(), "v9")


# ------------------------------------------------------------------------------------- panoptic
def test_panoptic_is_confident_queries_then_assignment():
    g = torch.Generator().manual_seed(0)
    class_logits = torch.randn(12, 4, generator=g) * 3
    mask_logits = torch.randn(12, 20, 30, generator=g) * 4
    panoptic, segments = panoptic_segments(class_logits, mask_logits, object_threshold=0.3, overlap_threshold=0.2)
    index, scores, labels = confident_queries(class_logits, 0.3)
    assert (labels != 3).all() and (scores > 0.3).all()
    again, segments2 = assign_segments(scores, labels, mask_logits[index], 0.2, query_index=index)
    assert torch.equal(panoptic, again) and segments == segments2
    assert len(segments) >= 2 and [s["id"] for s in segments] == list(range(1, len(segments) + 1))
    for s in segments:  # each segment lies inside its own query's foreground
        assert (mask_logits[s["query"]][panoptic == s["id"]] >= 0).all()
    strict, _ = panoptic_segments(class_logits, mask_logits, 0.3, 0.2, mask_threshold=0.9)
    assert (strict > 0).sum() < (panoptic > 0).sum()
    empty, none = panoptic_segments(class_logits, mask_logits, object_threshold=1.0)
    assert not none and not empty.any()


# ------------------------------------------------------------------------------------- box selection
def _candidates(shape=(40, 40)):
    """A: everything (best embedding match), B: the box itself, C: a dot inside the box (worst match)."""
    a = torch.full(shape, 5.0)
    b = torch.full(shape, -5.0)
    b[10:30, 10:30] = 5.0
    c = torch.full(shape, -5.0)
    c[19:21, 19:21] = 5.0
    return torch.stack([a, b, c]), torch.tensor([9.0, 4.0, 1.0])


def test_box_aware_selection_prefers_the_candidate_that_fits_the_box():
    masks, match = _candidates()
    box = (10, 10, 29, 29)
    fit = box_fit(masks > 0, box, margin=0.1)
    assert fit[1] == pytest.approx(1.0)
    # A's extent inside the grown box is the grown box (IoU 400/576), and only 576/1600 of A is there.
    assert fit[0] == pytest.approx(400 / 576 * 576 / 1600)
    assert fit[2] == pytest.approx(4 / 400)
    assert select_box_aware(masks, match, box, box_weight=0.0)[0] == 0  # the plain embedding choice
    index, scores = select_box_aware(masks, match, box, box_weight=0.5)
    assert index == 1 and scores.shape == (3,)
    assert scores[1] == pytest.approx(0.5 * 3 / 8 + 0.5)
    # Only the relative match matters: scaling the logits changes nothing.
    assert torch.allclose(select_box_aware(masks, match * 100, box)[1], scores)


def test_box_fit_edge_cases_and_errors():
    masks = torch.zeros(2, 30, 30, dtype=torch.bool)
    masks[1, 0:5, 0:5] = True  # far outside the grown box
    assert box_fit(masks, (15, 15, 25, 25)).tolist() == [0.0, 0.0]
    assert expand_box((0, 0, 9, 19), 0.1, (15, 25)) == (0, 0, 10, 21)
    assert expand_box((5, 5, 9, 9), 0.0, (15, 25)) == (5, 5, 9, 9)
    index, scores = select_box_aware(torch.zeros(2, 30, 30), torch.tensor([1.0, 1.0]), (5, 5, 9, 9))
    assert index == 0 and scores.tolist() == [0.0, 0.0]  # ties go to the first candidate
    with pytest.raises(ValueError, match="K >= 1 candidates"):
        select_box_aware(torch.zeros(0, 30, 30), torch.zeros(0), (5, 5, 9, 9))
    with pytest.raises(ValueError, match="box_weight"):
        select_box_aware(torch.zeros(1, 30, 30), torch.zeros(1), (5, 5, 9, 9), box_weight=2.0)
