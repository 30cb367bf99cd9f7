"""The batch prompts file: what it means, and errors that name the offending entry before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_seem.batch import PromptsFileError, load_prompts_file, parse_prompts, prompts_for_inputs
from napari_seem.cli.main import main
from napari_seem.prompts import Box, Point, Scribble


def test_every_prompt_kind_parses_to_the_engine_prompts():
    parsed = parse_prompts({
        "a.tif": [
            {"points": [[12, 30], [14.5, 31, 0]], "text": " nucleus "},
            {"id": 9, "frame": 2, "boxes": [[1, 2, 10, 20]]},
            {"scribbles": [[[1, 1], [5, 9]], {"points": [[3, 3]], "width": 5, "positive": False}]},
        ]
    })
    first, second, third = parsed["a.tif"]
    assert (first.object_id, first.frame) == (1, 0)
    assert first.prompt.points == [Point(12, 30), Point(14.5, 31, positive=False)]
    assert first.prompt.text == "nucleus"
    assert (second.object_id, second.frame) == (9, 2) and second.prompt.boxes == [Box(1, 2, 10, 20)]
    assert third.object_id == 3
    assert third.prompt.scribbles == [Scribble(((1, 1), (5, 9)), 3.0, True), Scribble(((3, 3),), 5.0, False)]


@pytest.mark.parametrize("objects, message", [
    ([{"points": [[1]]}], "'a.tif' object 1: points[0]: expected [y, x] or [y, x, label]"),
    ([{"text": "x"}, {"points": [[1, 2, 2]]}], "'a.tif' object 2: points[0]: the label must be 1 (positive) or 0"),
    ([{"points": [[1, float("nan")]]}], "'a.tif' object 1: points[0]: expected a finite number"),
    ([{"boxes": [[1, 2, 1, 9]]}], "'a.tif' object 1: boxes[0]: a box needs a non-zero height and width"),
    ([{"scribbles": [{"points": []}]}], "'a.tif' object 1: scribbles[0]: points must be a non-empty list"),
    ([{"text": "  "}], "'a.tif' object 1: text: expected a non-blank string"),
    ([{"id": 0, "text": "cell"}], "'a.tif' object 1: id: expected an integer >= 1"),
    ([{"frame": -1, "text": "cell"}], "'a.tif' object 1: frame: expected an integer >= 0"),
    ([{"point": [[1, 2]]}], "'a.tif' object 1: unknown keys ['point']"),
    ([{"id": 4}], "'a.tif' object 1: no prompt"),
    ([{"text": "a"}, {"id": 1, "text": "b"}], "'a.tif' object 2: id 1 on frame 0 is also object 1"),
    ([], "'a.tif': expected a non-empty list of objects"),
])
def test_a_bad_entry_is_named_in_the_error(objects, message):
    with pytest.raises(PromptsFileError) as info:
        parse_prompts({"a.tif": objects}, source="p.json")
    assert str(info.value).startswith("p.json: ") and message in str(info.value)


def test_entries_are_matched_to_inputs_by_file_name(tmp_path):
    inputs = [tmp_path / "x" / "a.tif", tmp_path / "b.png"]
    prompts = parse_prompts({"a.tif": [{"text": "cell"}], "*": [{"points": [[1, 2]]}]})
    objects, unused = prompts_for_inputs(prompts, inputs)
    assert objects[0][0].prompt.text == "cell" and objects[1][0].prompt.points == [Point(1, 2)] and unused == []
    _, unused = prompts_for_inputs(parse_prompts({"typo.tif": [{"text": "c"}], "*": [{"text": "c"}]}), inputs)
    assert unused == ["typo.tif"]  # the command warns about it
    with pytest.raises(PromptsFileError, match=r"no prompts for 'b.png'.*entries naming no input: 'c.png'"):
        prompts_for_inputs(parse_prompts({"a.tif": [{"text": "c"}], "c.png": [{"text": "c"}]}), inputs)


def test_a_file_that_is_not_json_says_so(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text('{"a.tif": [{"points": [[1, 2]]}')
    with pytest.raises(PromptsFileError, match="is not valid JSON"):
        load_prompts_file(path)
    path.write_text(json.dumps([{"points": [[1, 2]]}]))
    with pytest.raises(PromptsFileError, match="expected a JSON object mapping file names"):
        load_prompts_file(path)


def test_the_command_refuses_a_bad_prompts_file_before_writing_anything(inputs: Path, tmp_path, capsys):
    bad = tmp_path / "prompts.json"
    bad.write_text(json.dumps({"a.tif": [{"points": [[16, 20]]}], "*": [{"boxes": [[1, 2, 3]]}]}))
    out = tmp_path / "out"
    code = main(["segment", str(inputs), "--prompts", str(bad), "--out", str(out), "--local", "--variant", "tiny"])
    assert code == 2
    assert "'*' object 1: boxes[0]: expected [y0, x0, y1, x1], got [1, 2, 3]" in capsys.readouterr().err
    assert not out.exists()
