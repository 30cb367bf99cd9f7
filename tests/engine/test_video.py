"""VideoSession behaviour on a tiny random-weight model: directions, cancelling, lazy frames with a
bounded feature cache, corrections, one decode for many objects, lost objects, determinism, bad
input, and a z-stack propagated both ways from its middle slice.

Random weights segment nothing real, so lost detection is made deterministic through its
thresholds: ``lost_iou=0, lost_score=0`` never loses a non-empty mask, ``lost_score=1.01`` always loses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_seem.engine import FrameResult, SeemPredictor, VideoSession
from napari_seem.engine.carry import PropagationConfig
from napari_seem.model import build_seem
from napari_seem.prompts import MaskPrompt, ObjectPrompt, Point, PromptError, ReferenceRegion

from tiny import NEVER_LOST, tiny_config, video_predictor

SHAPE = (48, 40)
STARDIST_3D = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "stardist_synthetic_3d" / "image.tif"


@pytest.fixture(scope="module")
def predictor():
    return video_predictor()


def _frames(count: int = 6, seed: int = 0) -> np.ndarray:
    """``(count, 48, 40)`` uint16: a bright disc drifting right over noise."""
    rng = np.random.default_rng(seed)
    stack = (rng.random((count, *SHAPE)) * 500).astype(np.uint16)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for t in range(count):
        stack[t][(yy - 24) ** 2 + (xx - 12 - t) ** 2 < 64] += 3000
    return stack


def _click(y: float = 24, x: float = 12) -> ObjectPrompt:
    return ObjectPrompt(points=[Point(y, x)])


def _session(predictor, frames=None, **kwargs) -> VideoSession:
    options = {**NEVER_LOST, **kwargs}
    return VideoSession(predictor, _frames() if frames is None else frames, **options)


def _count_calls(monkeypatch, obj, name: str) -> list:
    """Record every call of ``obj.name`` (its arguments) while still running it."""
    calls = []
    original = getattr(obj, name)

    def wrapper(*args, **kwargs):
        calls.append((args, kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, wrapper)
    return calls


class CountingFrames:
    """A minimal frame source (``shape``, ``len``, ``[t]``) that counts reads."""

    def __init__(self, array) -> None:
        self.array = array
        self.shape = array.shape
        self.reads: list[int] = []

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t):
        self.reads.append(int(t))
        return self.array[t]


# ---------------------------------------------------------------------------- directions
def test_forward_backward_and_both_reach_every_frame_in_range(predictor):
    for direction, expected in (
        ("forward", [4, 5, 6]),
        ("backward", [2, 1, 0]),
        ("both", [4, 5, 6, 2, 1, 0]),
    ):
        session = _session(predictor, _frames(7))
        session.add_prompts(3, 1, _click(24, 15))
        yielded = list(session.propagate(direction))
        assert [f.frame for f in yielded] == expected, direction
        for f in yielded:
            assert isinstance(f, FrameResult) and set(f.results) == {1} and f.lost == set()
            assert f.results[1] is session.results[f.frame][1]
            assert f.results[1].mask.shape == SHAPE and f.results[1].mask.dtype == bool
            assert f.results[1].mask.any()
        assert sorted(session.results) == sorted(expected + [3])


def test_start_and_stop_bound_the_range(predictor):
    session = _session(predictor, _frames(7))
    session.add_prompts(1, 1, _click(24, 13))
    assert [f.frame for f in session.propagate("forward", stop=4)] == [2, 3, 4]
    assert [f.frame for f in session.propagate("forward", start=3, stop=5)] == [4, 5]
    assert [f.frame for f in session.propagate("both", stop=(0, 2))] == [2, 0]
    assert sorted(session.results) == [0, 1, 2, 3, 4, 5]


def test_closing_the_generator_keeps_completed_frames_and_nothing_beyond(predictor):
    session = _session(predictor)
    session.add_prompts(0, 1, _click())
    run = session.propagate("forward")
    assert next(run).frame == 1
    assert next(run).frame == 2
    run.close()
    assert sorted(session.results) == [0, 1, 2]
    # a later run picks up from the prompted frame again and completes the stack
    assert [f.frame for f in session.propagate("forward")] == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------- lazy frames
def test_dask_stack_longer_than_the_cache_streams_with_a_bounded_cache(predictor, monkeypatch):
    da = pytest.importorskip("dask.array")
    frames = _frames(12)
    source = CountingFrames(da.from_array(frames, chunks=(1, *SHAPE)))
    session = _session(predictor, source, max_cached_frames=3)
    encodes = _count_calls(monkeypatch, predictor.model, "encode")
    cache_sizes = []
    original_frame = session._frame

    def frame_spy(t):
        entry = original_frame(t)
        cache_sizes.append(len(session._cache))
        return entry

    monkeypatch.setattr(session, "_frame", frame_spy)
    session.add_prompts(0, 1, _click())
    for _ in session.propagate("forward"):
        assert len(session.cached_frames) <= 3
    assert sorted(session.results) == list(range(12))
    assert max(cache_sizes) == 3 and len(session.cached_frames) == 3
    assert source.reads == list(range(12)) and session.frame_reads == 12  # each frame read once
    assert len(encodes) == 12
    # the same numbers as from the numpy stack
    reference = _session(predictor, frames)
    reference.add_prompts(0, 1, _click())
    list(reference.propagate("forward"))
    for t in range(12):
        assert torch.equal(session.results[t][1].logits, reference.results[t][1].logits)


def test_multichannel_stack_uses_the_channel_choice(predictor):
    gray = _frames(3)
    noise = np.random.default_rng(5).integers(0, 4000, gray.shape, dtype=np.uint16)
    channels_last = np.stack([noise, gray], axis=-1)  # (T, H, W, 2)
    channels_second = np.moveaxis(channels_last, -1, 1)  # (T, 2, H, W)
    plain = _session(predictor, gray)
    plain.add_prompts(0, 1, _click())
    list(plain.propagate())
    for frames, axis in ((channels_last, -1), (channels_second, 1)):
        session = _session(predictor, frames, channel_axis=axis, channels=1)
        assert session.plane_shape == SHAPE
        session.add_prompts(0, 1, _click())
        list(session.propagate())
        assert torch.equal(session.results[2][1].logits, plain.results[2][1].logits)


# ---------------------------------------------------------------------------- corrections
def test_prompt_on_a_frame_is_the_predictors_answer_with_memory(predictor):
    frames = _frames()
    session = _session(predictor, frames)
    first = session.add_prompts(2, 1, _click(24, 14))
    refined_prompt = ObjectPrompt(points=[Point(24, 14), Point(5, 5, positive=False)])
    refined = session.add_prompts(2, 1, refined_prompt)  # memory = the stored result on frame 2
    predictor.set_image(frames[2])
    expected_first = predictor.predict(_click(24, 14))[0]
    expected = predictor.predict([refined_prompt], previous=[expected_first])[0]
    assert torch.equal(first.logits, expected_first.logits)
    assert torch.equal(refined.logits, expected.logits) and np.array_equal(refined.mask, expected.mask)
    assert session.results[2][1] is refined and session.prompted_frames[1] == [2]


def test_objects_of_one_frame_may_be_prompted_together(predictor, monkeypatch):
    frames = _frames()
    session = _session(predictor, frames, scale_to_objects=False)  # no size probe: the decodes are counted
    prompts = {3: _click(24, 14), 5: ObjectPrompt(points=[Point(10, 30)]), 8: ObjectPrompt(text="a cell")}
    decodes = _count_calls(monkeypatch, predictor.model, "decode")
    results = session.add_objects(1, prompts)
    assert list(results) == [3, 5, 8] and len(decodes) == 2  # both clicks in one decode, then the text
    predictor.set_image(frames[1])
    expected = predictor.predict(list(prompts.values()))
    for object_id, answer in zip(prompts, expected):
        assert torch.equal(results[object_id].logits, answer.logits)
        assert session.results[1][object_id] is results[object_id] and session.prompted_frames[object_id] == [1]
    with pytest.raises(PromptError, match="frame 1, object 4: empty prompt"):
        session.add_objects(1, {2: _click(), 4: ObjectPrompt()})
    assert 2 not in session.results[1]  # nothing stored when one object fails
    with pytest.raises(ValueError, match="non-empty mapping"):
        session.add_objects(1, {})


def test_session_leaves_the_predictors_own_image_alone(predictor):
    predictor.set_image(_frames(seed=9)[0])
    features, prepared = predictor.features, predictor.prepared
    session = _session(predictor)
    session.add_prompts(0, 1, _click())
    assert predictor.features is features and predictor.prepared is prepared


def test_correction_replaces_its_frame_and_repropagation_keeps_earlier_frames(predictor):
    session = _session(predictor)
    session.add_prompts(0, 1, _click())
    list(session.propagate("forward"))
    before = {t: session.results[t][1] for t in range(6)}
    corrected = session.add_prompts(3, 1, ObjectPrompt(points=[Point(10, 30)]))
    assert session.results[3][1] is corrected is not before[3]
    assert session.prompted_frames[1] == [0, 3]
    assert [f.frame for f in session.propagate("forward")] == [4, 5]  # from the latest prompted frame
    for t in (0, 1, 2):
        assert session.results[t][1] is before[t]
    assert session.results[3][1] is corrected
    for t in (4, 5):
        assert session.results[t][1] is not before[t]
        assert not torch.equal(session.results[t][1].logits, before[t].logits)


def test_propagation_never_overwrites_a_user_prompted_frame(predictor):
    session = _session(predictor)
    on_three = session.add_prompts(3, 1, ObjectPrompt(points=[Point(10, 30)]))
    session.add_prompts(0, 1, _click())  # prompted last: propagation starts here
    yielded = {f.frame: f for f in session.propagate("forward")}
    assert sorted(yielded) == [1, 2, 3, 4, 5]
    assert session.results[3][1] is on_three and yielded[3].results[1] is on_three


def test_reference_region_may_name_a_frame(predictor):
    frames = _frames()
    session = _session(predictor, frames)
    mask = np.zeros(SHAPE, bool)
    mask[18:30, 6:18] = True
    result = session.add_prompts(4, 2, ObjectPrompt(reference=ReferenceRegion(0, mask)))
    assert result.mask.shape == SHAPE and session.results[4][2] is result
    with pytest.raises(ValueError, match="reference frame 9 is outside"):
        session.add_prompts(4, 2, ObjectPrompt(reference=ReferenceRegion(9, mask)))


# ---------------------------------------------------------------------------- many objects, lost objects
def test_several_objects_are_carried_in_one_decode_per_frame(predictor, monkeypatch):
    # Random weights give overlapping masks; one pixel, one object would empty some of them.
    session = _session(predictor, _frames(4), config=PropagationConfig(exclusive=False))
    assert session.objects_per_pass == 8  # the tiny model's memory tokens
    for object_id in range(1, 6):
        session.add_prompts(0, object_id, _click(6 + 8 * object_id, 12))
    decodes = _count_calls(monkeypatch, predictor.model, "decode")
    frames = list(session.propagate("forward"))
    assert len(decodes) == 3  # frames 1, 2, 3: one decode each for all five objects
    assert all(kwargs["prev_mask"].shape[:2] == (1, 5) for _, kwargs in decodes)
    assert all(set(f.results) == {1, 2, 3, 4, 5} for f in frames)


def test_objects_beyond_one_pass_are_chunked(predictor, monkeypatch):
    session = _session(predictor, _frames(3), config=PropagationConfig(exclusive=False))
    for object_id in range(1, 11):
        session.add_prompts(0, object_id, _click(4 + 4 * object_id, 12))
    decodes = _count_calls(monkeypatch, predictor.model, "decode")
    list(session.propagate("forward"))
    assert [kwargs["prev_mask"].shape[1] for _, kwargs in decodes] == [8, 2, 8, 2]
    assert set(session.results[2]) == set(range(1, 11))


def test_lost_objects_get_no_mask_and_stop(predictor, monkeypatch):
    session = _session(predictor, lost_score=1.01)  # no mask can score above 1: always lost
    session.add_prompts(0, 1, _click())
    session.add_prompts(0, 2, _click(10, 30))
    decodes = _count_calls(monkeypatch, predictor.model, "decode")
    yielded = list(session.propagate("forward"))
    assert yielded[0].frame == 1 and yielded[0].lost == {1, 2} and yielded[0].results == {}
    assert all(f.results == {} and f.lost == set() for f in yielded[1:])
    assert len(decodes) == 1  # nothing is carried after frame 1
    assert sorted(session.results) == [0] and session.lost == {1: {1, 2}}


def test_losing_an_object_removes_its_stale_results_and_it_resumes_where_prompted(predictor):
    session = _session(predictor)
    session.add_prompts(0, 1, _click())
    list(session.propagate("forward"))
    assert sorted(session.results) == [0, 1, 2, 3, 4, 5]
    on_three = session.add_prompts(3, 1, ObjectPrompt(points=[Point(24, 15)]))
    session.add_prompts(0, 1, _click())  # prompted last: the next run starts from frame 0
    session.lost_score = 1.01
    yielded = {f.frame: f for f in session.propagate("forward")}
    assert yielded[1].lost == {1} and yielded[2].lost == set() and yielded[2].results == {}
    assert yielded[3].results == {1: on_three}  # the user's frame: resumed there
    assert yielded[4].lost == {1} and yielded[5].results == {}
    assert sorted(session.results) == [0, 3] and session.lost == {1: {1}, 4: {1}}


def test_thresholds_decide_lost(predictor):
    kept = _session(predictor)
    kept.add_prompts(0, 1, _click())
    assert list(kept.propagate(stop=1))[0].lost == set()
    by_iou = _session(predictor, lost_iou=1.01)  # no overlap can exceed 1
    by_iou.add_prompts(0, 1, _click())
    assert list(by_iou.propagate(stop=1))[0].lost == {1}


# ---------------------------------------------------------------------------- determinism, API
def test_same_inputs_give_the_same_outputs(predictor):
    runs = []
    for _ in range(2):
        session = _session(predictor, anchor_weight=0.5)
        session.add_prompts(2, 1, _click(24, 14))
        session.add_prompts(2, 2, ObjectPrompt(masks=[MaskPrompt(_frames()[2] > 2000)]))
        list(session.propagate("both"))
        runs.append(session)
    a, b = runs
    assert sorted(a.results) == sorted(b.results) == list(range(6))
    for t in range(6):
        for object_id in (1, 2):
            assert torch.equal(a.results[t][object_id].logits, b.results[t][object_id].logits)
            assert np.array_equal(a.results[t][object_id].mask, b.results[t][object_id].mask)


def test_labels_paint_object_ids(predictor):
    session = _session(predictor, _frames(2))
    session.add_prompts(0, 7, _click())
    list(session.propagate())
    labels = session.labels(1, dtype=np.uint16)
    assert labels.dtype == np.uint16 and labels.shape == SHAPE
    assert set(np.unique(labels)) <= {0, 7}
    assert np.array_equal(labels == 7, session.results[1][7].mask)
    session.remove(7)
    assert session.results == {} and session.objects == []


def test_bad_input_raises_clear_errors(predictor):
    session = _session(predictor)
    with pytest.raises(ValueError, match="no prompted objects"):
        session.propagate()
    with pytest.raises(ValueError, match="frame 6 is outside this stack's frames 0..5"):
        session.add_prompts(6, 1, _click())
    with pytest.raises(ValueError, match="frame -1 is outside"):
        session.add_prompts(-1, 1, _click())
    with pytest.raises(ValueError, match="integer frame index"):
        session.add_prompts(1.5, 1, _click())
    for bad_id in (0, -3, "a", True):
        with pytest.raises(ValueError, match="object id must be a positive integer"):
            session.add_prompts(0, bad_id, _click())
    with pytest.raises(PromptError, match="frame 0, object 1: empty prompt"):
        session.add_prompts(0, 1, ObjectPrompt())
    with pytest.raises(PromptError, match="outside the 48x40 image"):
        session.add_prompts(0, 1, _click(60, 10))
    with pytest.raises(PromptError, match="does not match the image plane"):
        session.add_prompts(0, 1, ObjectPrompt(masks=[MaskPrompt(np.ones((5, 5), bool))]))
    with pytest.raises(TypeError, match="ObjectPrompt"):
        session.add_prompts(0, 1, [_click()])
    session.add_prompts(0, 1, _click())
    with pytest.raises(ValueError, match="direction must be one of"):
        session.propagate("sideways")
    with pytest.raises(ValueError, match="unknown object ids \\[9\\]"):
        session.propagate(objects=[9])
    with pytest.raises(ValueError, match="stop 6 is outside"):
        session.propagate(stop=6)
    with pytest.raises(ValueError, match="start frame 4 has no result"):
        session.propagate(start=4)
    with pytest.raises(ValueError, match="\\(first, last\\) pair"):
        session.propagate("both", stop=3)
    with pytest.raises(ValueError, match="\\(T, H, W\\) or \\(T, H, W, C\\)"):
        VideoSession(predictor, _frames()[0])
    with pytest.raises(ValueError, match="not a channel axis"):
        VideoSession(predictor, np.zeros((3, 8, 8, 2)), channel_axis=0)
    with pytest.raises(ValueError, match="max_cached_frames must be at least 2"):
        VideoSession(predictor, _frames(), max_cached_frames=1)
    assert session.results[0][1].mask.any()  # nothing above disturbed the stored state
    assert sorted(session.results) == [0]


# ---------------------------------------------------------------------------- z-stack
@pytest.mark.skipif(not STARDIST_3D.exists(), reason="shared stardist_synthetic_3d data not available")
def test_z_stack_propagates_both_ways_from_the_middle_slice(predictor):
    import tifffile

    volume = tifffile.imread(STARDIST_3D)  # (Z, Y, X) = (31, 61, 57) uint16
    labels = tifffile.imread(STARDIST_3D.with_name("labels.tif"))
    middle = volume.shape[0] // 2
    ids, areas = np.unique(labels[middle][labels[middle] > 0], return_counts=True)
    nuclei = ids[np.argsort(areas)[-2:]]  # the two largest nuclei of the middle slice
    session = _session(predictor, volume)
    for object_id, nucleus in enumerate(nuclei, start=1):
        session.add_prompts(middle, object_id, ObjectPrompt(masks=[MaskPrompt(labels[middle] == nucleus)]))
    order = [f.frame for f in session.propagate("both")]
    depth = volume.shape[0]
    assert order == list(range(middle + 1, depth)) + list(range(middle - 1, -1, -1))
    assert sorted(session.results) == list(range(depth))
    assert all(set(session.results[z]) == {1, 2} for z in range(depth))
    assert session.results[0][1].mask.shape == volume.shape[1:]


def test_propagation_in_v0_mode_is_refused_and_says_which_models_can():
    torch.manual_seed(0)
    v0 = SeemPredictor(build_seem(tiny_config("v0")), target_size=64)
    session = VideoSession(v0, _frames(), **NEVER_LOST)
    session.add_prompts(0, 1, _click())
    with pytest.raises(ValueError, match="'v0' mode: choose a v1 model"):
        next(session.propagate("forward"))
    assert set(session.results) == {0}  # nothing was propagated
