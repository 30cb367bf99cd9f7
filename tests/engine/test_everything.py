"""``SeemPredictor.segment_everything`` on a tiny random-weight model: open-vocabulary instances as one
non-overlapping label image at the plane's resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.engine import SeemPredictor
from napari_seem.model import build_seem
from napari_seem.model.postprocess import panoptic_segments, resize_mask_logits

from tiny import tiny_config

VOCABULARY = ["nucleus", "cell", "debris"]
# Random weights spread the class probability (~1/3 each): accept every non-background query and
# any overlap so that several instances appear.
LOOSE = dict(object_threshold=0.0, overlap_threshold=0.0)


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return SeemPredictor(build_seem(tiny_config()), target_size=96)


def _plane(shape=(120, 80), seed=1):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 4000).astype(np.uint16)


def test_label_image_at_full_resolution_with_ids_and_class_names(predictor):
    result = predictor.segment_everything(VOCABULARY, image=_plane(), **LOOSE)
    n = len(result)
    assert n >= 2
    assert result.labels.shape == (120, 80) and result.labels.dtype == np.int32
    assert set(np.unique(result.labels)) == set(range(n + 1))  # ids 1..n, 0 = background
    assert len(result.class_names) == len(result.class_ids) == len(result.scores) == n
    assert result.class_names == [VOCABULARY[c] for c in result.class_ids]
    assert all(0.0 < s <= 1.0 for s in result.scores)


def test_same_as_panoptic_segments_when_the_plane_is_the_model_size(predictor):
    """At scale 1 the label image is exactly the official panoptic assignment on the object queries."""
    plane = _plane((96, 64), seed=2)
    result = predictor.segment_everything(VOCABULARY, image=plane, **LOOSE)
    model = predictor.model
    with torch.no_grad():
        pred = model.decode(predictor.features).final["queries_object"]
        features = predictor.features
        masks = resize_mask_logits(pred.masks, features.padded_size, features.image_size)[0]
        expected, segments = panoptic_segments(pred.logits[0], masks, **LOOSE)
    assert np.array_equal(result.labels, expected.numpy())
    assert result.class_ids == [s["category_id"] for s in segments]
    assert result.scores == pytest.approx([s["score"] for s in segments])


def test_thresholds_are_respected(predictor):
    plane = _plane()
    loose = predictor.segment_everything(VOCABULARY, image=plane, **LOOSE)
    none = predictor.segment_everything(VOCABULARY, object_threshold=1.0, overlap_threshold=0.0)
    assert len(none) == 0 and not none.labels.any()
    some = predictor.segment_everything(VOCABULARY, object_threshold=min(loose.scores), overlap_threshold=0.0)
    assert all(s > min(loose.scores) for s in some.scores) and len(some) < len(loose)

    areas = np.bincount(loose.labels.ravel())[1:]
    assert areas.min() < areas.max()
    cut = int(np.sort(areas)[len(areas) // 2])
    big = predictor.segment_everything(VOCABULARY, min_area=cut, **LOOSE)
    big_areas = np.bincount(big.labels.ravel())[1:]
    assert len(big) == int((areas >= cut).sum()) and (big_areas >= cut).all()
    assert set(np.unique(big.labels)) == set(range(len(big) + 1))  # renumbered 1..n
    # Dropping small segments leaves the others' pixels unchanged (they become background).
    kept = big.labels > 0
    assert np.array_equal(kept, np.isin(loose.labels, 1 + np.nonzero(areas >= cut)[0]))


def test_deterministic_and_image_argument_sets_the_image(predictor):
    a = predictor.segment_everything(VOCABULARY, image=_plane(seed=3), **LOOSE)
    predictor.set_image(_plane(seed=4))
    predictor.set_image(_plane(seed=3))
    b = predictor.segment_everything(VOCABULARY, **LOOSE)
    assert np.array_equal(a.labels, b.labels) and a.scores == b.scores and a.class_ids == b.class_ids


def test_vocabulary_embeddings_are_cached(predictor, monkeypatch):
    calls = []
    original = predictor.model.set_vocabulary
    monkeypatch.setattr(predictor.model, "set_vocabulary", lambda names: calls.append(names) or original(names))
    predictor.set_vocabulary(None)
    predictor.segment_everything(VOCABULARY, image=_plane())
    predictor.segment_everything(VOCABULARY)
    assert len(calls) == 1
    predictor.segment_everything(["nucleus"])
    assert len(calls) == 2 and predictor.vocabulary == ["nucleus"]


@pytest.mark.parametrize(
    "vocabulary, kwargs, message",
    [
        ([], {}, "non-empty vocabulary"),
        (None, {}, "non-empty vocabulary"),
        ("nucleus", {}, "not one string"),
        (["nucleus", " "], {}, "non-blank strings"),
        (["cell", "cell"], {}, "unique, repeated: \\['cell'\\]"),
        (["cell"], {"object_threshold": 1.5}, "object_threshold must be in"),
        (["cell"], {"mask_threshold": 0.0}, "mask_threshold must be in"),
        (["cell"], {"min_area": -1}, "min_area must be"),
    ],
)
def test_bad_arguments_are_clear_errors(predictor, vocabulary, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predictor.segment_everything(vocabulary, **kwargs)


def test_needs_an_image():
    with pytest.raises(RuntimeError, match="set_image"):
        SeemPredictor(build_seem(tiny_config())).segment_everything(["cell"])
