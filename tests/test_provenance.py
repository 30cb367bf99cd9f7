"""The provenance record: masks and prompts survive JSON exactly; undone rounds drop out of a save."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_seem import provenance
from napari_seem.prompts import Box, MaskPrompt, ObjectPrompt, Point, ReferenceRegion, Scribble


def test_masks_round_trip_through_run_lengths():
    rng = np.random.default_rng(0)
    for mask in (rng.random((37, 53)) > 0.6, np.ones((4, 5), bool), np.zeros((6, 2), bool)):
        code = provenance.encode_mask(mask)
        json.dumps(code)  # JSON-ready
        np.testing.assert_array_equal(provenance.decode_mask(code), mask)
    edge = np.zeros((3, 3), bool)
    edge[0, 0] = edge[2, 2] = True  # runs touching both ends of the flattened array
    np.testing.assert_array_equal(provenance.decode_mask(provenance.encode_mask(edge)), edge)


def test_every_prompt_kind_round_trips():
    mask = np.zeros((20, 30), bool)
    mask[3:9, 4:12] = True
    reference_image = np.arange(600, dtype=np.uint16).reshape(20, 30)
    prompt = ObjectPrompt(
        points=[Point(2.5, 3.0), Point(10, 11, positive=False)],
        boxes=[Box(1, 2, 8, 9)],
        scribbles=[Scribble(((1, 1), (5, 7)), width=2.0, positive=False)],
        masks=[MaskPrompt(mask, positive=True)],
        text="nucleus",
        reference=ReferenceRegion(reference_image, mask),
    )
    references: dict[str, np.ndarray] = {}
    data = json.loads(json.dumps(provenance.prompt_to_json(prompt, references)))
    assert len(references) == 1
    back = provenance.prompt_from_json(data, references)
    assert back.points == prompt.points and back.boxes == prompt.boxes and back.scribbles == prompt.scribbles
    assert back.text == "nucleus"
    np.testing.assert_array_equal(back.masks[0].mask, mask)
    np.testing.assert_array_equal(back.reference.image, reference_image)
    np.testing.assert_array_equal(back.reference.mask, mask)
    with pytest.raises(provenance.ProvenanceError, match="reference image"):
        provenance.prompt_from_json(data, {})  # the reference image is needed, and said so
    frame_ref = provenance.prompt_to_json(ObjectPrompt(reference=ReferenceRegion(4, mask)))
    assert provenance.prompt_from_json(frame_ref).reference.image == 4


def test_undone_rounds_are_dropped_and_hand_edits_flagged(tmp_path):
    labels = np.zeros((8, 8), np.int32)
    log = provenance.ProvenanceLog({"model": {"name": "m"}})
    labels[1:3, 1:3] = 1
    log.add_round("prompt", {"objects": [1]}, labels)
    after_first = labels.copy()
    labels[5:7, 5:7] = 2
    log.add_round("prompt", {"objects": [2]}, labels)

    assert [r["round"] for r in log.live(labels).rounds] == [1, 2]
    assert not log.live(labels).header["edited_after_last_round"]
    # Ctrl-Z of round 2: the labels are back at round 1's state.
    assert [r["round"] for r in log.live(after_first).rounds] == [1]
    painted = labels.copy()
    painted[0, 7] = 9  # a brush stroke after the last round
    live = log.live(painted)
    assert live.header["edited_after_last_round"] and len(live.rounds) == 2

    path = provenance.save(log.live(labels), tmp_path / "x.provenance.json")
    again = provenance.load(path)
    assert again.rounds == log.rounds and again.header["model"] == {"name": "m"}
    assert provenance.load(path.read_text()).rounds == log.rounds


def test_bad_files_say_what_they_are(tmp_path):
    with pytest.raises(provenance.ProvenanceError, match="no provenance file"):
        provenance.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(provenance.ProvenanceError, match="not a JSON provenance file"):
        provenance.load(bad)
    with pytest.raises(provenance.ProvenanceError, match="not a napari-seem provenance record"):
        provenance.load({"format": "something else", "rounds": []})
    newer = {"format": provenance.FORMAT, "format_version": provenance.FORMAT_VERSION + 1, "rounds": []}
    with pytest.raises(provenance.ProvenanceError, match="update napari-seem"):
        provenance.load(newer)


def test_provenance_path_sits_beside_the_labels(tmp_path):
    assert provenance.provenance_path(tmp_path / "cells_labels.tif") == tmp_path / "cells_labels.provenance.json"
