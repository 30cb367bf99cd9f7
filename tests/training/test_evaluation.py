"""Evaluation: NoC and mIoU on a fake predictor with known IoUs, boundary F, propagation and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_seem.cli.main import main
from napari_seem.engine import SeemPredictor
from napari_seem.engine.conversion import ObjectResult
from napari_seem.evaluation import boundary_f, evaluate_interactive, evaluate_propagation, number_of_clicks
from napari_seem.evaluation.interactive import iou_after, summarize
from napari_seem.model import build_seem
from napari_seem.training.checkpoint import save_trained

from tiny import tiny_config


def square(size=40, top=10, side=20):
    mask = np.zeros((size, size), bool)
    mask[top : top + side, top : top + side] = True
    return mask


def with_iou(target: np.ndarray, iou: float) -> np.ndarray:
    """A mask of ``target``'s top rows covering ``iou`` of it (IoU = covered / target area)."""
    ys = np.nonzero(target.any(1))[0]
    rows = int(round(iou * len(ys)))
    out = np.zeros_like(target)
    out[ys[:rows]] = target[ys[:rows]]
    return out


class FakePredictor:
    """Answers the k-th prompt of each object with a mask of the k-th IoU of a script; records the
    prompts and memories it was given."""

    def __init__(self, scripts: list[list[float]], target: np.ndarray) -> None:
        self.scripts, self.target = scripts, target
        self.object, self.calls, self.log = -1, 0, []

    def set_image(self, image) -> None:
        pass

    def predict(self, prompts, previous=None):
        if previous is None:  # a new object starts with a prompt without memory
            self.object, self.calls = self.object + 1, 0
        script = self.scripts[self.object]
        iou = script[min(self.calls, len(script) - 1)]
        self.calls += 1
        self.log.append((len(prompts[0].points), previous is not None))
        return [ObjectResult(with_iou(self.target, iou), torch.zeros(4, 4), 1.0)]


def test_number_of_clicks():
    assert number_of_clicks([0.5, 0.8, 0.86, 0.95], 0.85) == 3
    assert number_of_clicks([0.5, 0.8, 0.86, 0.95], 0.90) == 4
    assert number_of_clicks([0.5] * 30, 0.85, max_clicks=20) == 20
    assert iou_after([0.5, 0.9], 5) == 0.9


def test_noc_and_miou_on_a_fake_predictor_with_known_ious():
    target = square()
    labels = target.astype(np.int32)
    labels2 = labels * 2  # the same object under another id in a second image
    scripts = [[0.5, 0.8, 0.85, 0.95, 0.95, 1.0], [0.9, 0.95, 1.0]]
    fake = FakePredictor(scripts, target)
    report = evaluate_interactive(fake, [("one", np.zeros((40, 40)), labels), ("two", np.zeros((40, 40)), labels2)],
                                  max_clicks=20)
    measured = [t.ious for t in report.traces]
    assert measured[0][:5] == pytest.approx([0.5, 0.8, 0.85, 0.95, 0.95])
    # NoC@85: 3 and 1 clicks; NoC@90: 4 and 1.
    assert report.noc == {"NoC@85": 2.0, "NoC@90": 2.5}
    assert report.miou["mIoU@1"] == pytest.approx((0.5 + 0.9) / 2)
    assert report.miou["mIoU@5"] == pytest.approx((0.95 + 1.0) / 2)
    assert report.failures == {"NoC@85": 0, "NoC@90": 0}
    # Each round prompts all clicks so far, with the previous result as memory from round 2 on.
    first_object = fake.log[: len(measured[0])]
    assert [n for n, _ in first_object] == list(range(1, len(measured[0]) + 1))
    assert [m for _, m in first_object] == [False] + [True] * (len(measured[0]) - 1)


def test_summaries_need_objects():
    with pytest.raises(ValueError, match="no objects"):
        summarize("empty", [], 0, 0.0)


def test_objects_that_never_reach_the_threshold_count_as_max_clicks():
    fake = FakePredictor([[0.6] * 30], square())
    report = evaluate_interactive(fake, [("one", np.zeros((40, 40)), square().astype(np.int32))], max_clicks=7)
    assert report.noc == {"NoC@85": 7.0, "NoC@90": 7.0} and report.failures["NoC@85"] == 1
    assert len(report.traces[0].ious) == 7


def test_boundary_f():
    target = square(64, 10, 30)
    assert boundary_f(target, target) == 1.0
    assert boundary_f(np.roll(target, 2, axis=1), target, tolerance=3) == 1.0
    assert boundary_f(np.roll(target, 20, axis=1), target, tolerance=3) < 0.5
    assert boundary_f(np.zeros_like(target), target) == 0.0
    assert boundary_f(np.zeros_like(target), np.zeros_like(target)) == 1.0


def test_propagation_scores_every_frame_against_the_tracks():
    from synthetic_instances import synthetic_pair

    image, labels = synthetic_pair(0, size=64)
    frames, reference = np.stack([image] * 3), np.stack([labels] * 3)
    reference[2][reference[2] == 1] = 0  # track 1 ends after frame 1
    torch.manual_seed(0)
    report = evaluate_propagation(SeemPredictor(build_seem(tiny_config())), frames, reference)
    assert report.objects == len(np.unique(labels)) - 1 and report.frames == 3
    assert [s.frame for s in report.per_frame] == [1, 2]
    assert report.per_frame[1].tracks == report.objects - 1  # the prompted frame 0 is not scored
    assert 0 <= report.jf <= 1 and 0 <= report.j_volume <= 1
    ends = {s.object_id: s.extent for s in report.per_object}
    assert ends[1] == (0, 1) and all(s.anchor == 0 for s in report.per_object)


def test_j_volume_and_extent_error_catch_a_never_ending_object():
    """J and F only look at the frames where the object is; J_volume and the extent error also see
    the frames where it is not: an object carried onto every slice scores the same J&F, but a lower
    J_volume and its ends one slice off each."""
    from napari_seem.engine.predictor import ObjectResult
    from napari_seem.evaluation.propagation import score_session

    cube = square(32, 8, 20)
    reference = np.zeros((5, 32, 32), np.uint16)
    reference[1:4][:, cube] = 1  # the object spans frames 1..3, prompted on 2
    result = ObjectResult(cube, torch.zeros(1, 1), 1.0)
    exact = {t: {1: result} for t in (1, 2, 3)}
    endless = {t: {1: result} for t in range(5)}
    a = score_session(exact, {}, reference, {1: 2}, 0.0)
    b = score_session(endless, {}, reference, {1: 2}, 0.0)
    assert a.jf == b.jf == 1.0
    assert a.j_volume == 1.0 and a.extent_error == 0.0
    assert b.j_volume == pytest.approx(3 / 5) and b.extent_error == 1.0
    lost = score_session({2: {1: result}}, {3: {1}}, reference, {1: 2}, 0.0)
    assert lost.lost_tracks == 1 and lost.per_object[0].predicted == (2, 2)


def test_eval_cli_runs_on_two_images_with_the_tiny_model(tmp_path, synthetic_folder, capsys):
    torch.manual_seed(0)
    checkpoint = save_trained(tmp_path / "tiny.pt", build_seem(tiny_config()), seed=0, command="test")
    out = tmp_path / "eval.json"
    code = main(["eval", "interactive", "--data", str(synthetic_folder), "--names", "syn_a", "syn_b",
                 "--checkpoint", str(checkpoint), "--max-clicks", "3", "--max-objects", "2", "--threads", "1",
                 "--out", str(out), "--per-object"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "NoC@85" in printed and "synthetic" in printed
    report = json.loads(out.read_text())
    dataset = report["datasets"][0]
    assert dataset["images"] == 2 and dataset["objects"] == 4
    assert set(dataset["noc"]) == {"NoC@85", "NoC@90"} and 1 <= dataset["noc"]["NoC@85"] <= 3
    assert set(dataset["miou"]) == {f"mIoU@{k}" for k in range(1, 6)}
    assert report["weights"].startswith("trained checkpoint") and len(report["per_object"]) == 4


def test_train_cli_writes_a_checkpoint(tmp_path, synthetic_folder, capsys):
    code = main(["train", "--data", f"{synthetic_folder}:nucleus:2", "--holdout", "syn_c", "--out", str(tmp_path),
                 "--steps", "1", "--batch-size", "1", "--crop", "64", "--threads", "1", "--objects-per-image", "1"])
    assert code == 0
    from napari_seem.training import read_record

    record = read_record(tmp_path / "model.pt")
    assert record["command"].startswith("napari-seem train --data") and record["metrics"]["steps"] == 1
    assert record["data"]["datasets"][0]["weight"] == 1.0  # one dataset: all of the mix
    printed = capsys.readouterr().out
    assert "step 1/1" in printed
    assert json.loads(printed[printed.index("\n{") :])["steps"] == 1


def test_matched_ious_takes_each_objects_best_instance():
    from napari_seem.evaluation.instances import matched_ious

    truth = np.zeros((10, 10), int)
    truth[0:4, 0:4] = 1  # found exactly
    truth[6:10, 6:10] = 2  # found half
    truth[0:2, 8:10] = 3  # missed
    predicted = np.zeros((10, 10), int)
    predicted[0:4, 0:4] = 7
    predicted[6:10, 6:8] = 9
    assert matched_ious(predicted, truth) == [1.0, 0.5, 0.0]


def test_eval_propagation_cli_on_a_z_stack_folder_reports_the_tube_and_the_floor(tmp_path, capsys):
    """A folder of z-stacks: each object prompted on its middle slice, both ways, with the z rule;
    the report has J_volume, the extent error and the random-walker floor on the same objects."""
    import tifffile

    cube = np.zeros((7, 32, 32), np.uint16)
    cube[1:6, 8:20, 8:20] = 1  # one object on slices 1..5: its middle slice is 3
    noise = np.random.default_rng(0).integers(0, 200, cube.shape)
    frames = (np.where(cube > 0, 3000, 100) + noise).astype(np.uint16)
    for folder in ("images", "labels"):
        (tmp_path / "zs" / folder).mkdir(parents=True)
    tifffile.imwrite(tmp_path / "zs" / "images" / "a.tif", frames)
    tifffile.imwrite(tmp_path / "zs" / "labels" / "a.tif", cube)
    torch.manual_seed(0)
    checkpoint = save_trained(tmp_path / "tiny.pt", build_seem(tiny_config()), seed=0, command="test")
    out = tmp_path / "prop.json"
    code = main(["eval", "propagation", "--data", str(tmp_path / "zs"), "--checkpoint", str(checkpoint),
                 "--threads", "1", "--out", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["stack_kind"] == "z" and report["anchors"] == "middle" and report["objects"] == 1
    assert report["per_object"][0]["anchor"] == 3 and report["per_object"][0]["extent"] == [1, 5]
    assert 0 <= report["j_volume"] <= 1 and report["extent_error"] >= 0
    floor = report["baseline"]
    assert floor["name"].startswith("random walker") and floor["extent_error"] <= 1 and floor["j_volume"] > 0.5
    assert "J_vol" in capsys.readouterr().out


def test_eval_seed_also_seeds_the_points_the_model_samples(tmp_path):
    """``eval --seed`` reaches the predictor, whose generator draws the points of a reference region
    (the propagation figures of docs/propagation.md are given per seed)."""
    from napari_seem.cli.main import build_parser
    from napari_seem.evaluation.cli import _predictor

    torch.manual_seed(0)
    checkpoint = save_trained(tmp_path / "tiny.pt", build_seem(tiny_config()), seed=0, command="test")
    for seed in (0, 2):
        args = build_parser().parse_args(["eval", "propagation", "--data", str(tmp_path), "--checkpoint",
                                          str(checkpoint), "--threads", "1", "--seed", str(seed)])
        predictor, _ = _predictor(args)
        assert predictor.seed == seed


def test_matches_at_counts_false_instances_that_matched_iou_ignores():
    from napari_seem.evaluation.instances import matched_ious, matches_at

    truth = np.zeros((20, 20), np.int32)
    truth[2:8, 2:8], truth[12:18, 12:18] = 1, 2
    found = truth.copy()
    found[0, :], found[19, :5] = 3, 4  # two false instances on the background
    assert matched_ious(found, truth) == [1.0, 1.0]
    assert matches_at(found, truth) == (2, 4, 2)  # F1 = 4 / 6
    with pytest.raises(ValueError):
        matches_at(found, truth, threshold=0.3)
