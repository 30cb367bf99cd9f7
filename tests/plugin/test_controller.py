"""The widget's Qt-free logic: axes and planes, prompts, ranges, writes, model sources (no viewer)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels, Points

from napari_seem.plugin import models
from napari_seem.plugin.controller import (
    AxisStack,
    Geometry,
    PlaneEverything,
    PluginError,
    SeemController,
    apply_write,
    class_name_of,
    current_plane,
    describe_plane,
    layer_geometry,
    objects_to_segment,
    parse_channels,
    parse_vocabulary,
    prompt_key,
    propagation_axis,
    propagation_range,
    relabel_new_object,
    update_features,
)
from napari_seem.prompts import ObjectPrompt, Point


def test_geometry_of_a_multichannel_time_lapse():
    g = Geometry((5, 2, 30, 40), channel_axis=1)  # (T, C, Y, X)
    assert g.leading == (0,) and g.plane_shape == (30, 40) and g.labels_shape == (5, 30, 40)
    assert g.n_channels == 2 and g.plane_channel_axis == 0
    plane = (3, 1)  # t = 3, channel 1 on screen
    assert g.labels_plane(plane) == (3,)
    assert g.image_index(plane) == (3, slice(None), slice(None), slice(None))
    assert g.planes(plane) == [(t, 1) for t in range(5)]


def test_geometry_of_rgb_and_errors():
    g = Geometry((4, 30, 40, 3), rgb=True)
    assert g.ndim == 3 and g.plane_shape == (30, 40) and g.labels_shape == (4, 30, 40) and g.n_channels == 3
    with pytest.raises(PluginError, match="no image"):
        layer_geometry(None)
    with pytest.raises(PluginError, match="not one of the leading axes"):
        layer_geometry(Image(np.zeros((3, 20, 20))), channel_axis=1)
    with pytest.raises(PluginError, match="too small"):
        layer_geometry(Image(np.zeros((1, 20))))


def test_current_plane_from_the_viewer_point_through_the_layer_transform():
    layer = Image(np.zeros((6, 20, 20)), scale=(2, 1, 1))
    g = layer_geometry(layer)
    assert current_plane(layer, g, (8.0, 3.0, 4.0)) == (4,)
    assert current_plane(layer, g, (99.0, 0, 0)) == (5,)  # clipped to the stack


def test_axis_stack_reads_one_frame_along_the_chosen_axis():
    data = np.arange(2 * 3 * 2 * 4 * 5).reshape(2, 3, 2, 4, 5)  # (T, Z, C, Y, X)
    g = Geometry(data.shape, channel_axis=2)
    stack = AxisStack(data, g, axis=1, plane=(1, 0, 0))
    assert stack.shape == (3, 2, 4, 5) and len(stack) == 3 and stack.channel_axis == 1
    np.testing.assert_array_equal(stack[2], data[1, 2])
    assert propagation_axis(g, "z", 1) == 1 and g.labels_axis(1) == 1 and g.labels_axis(3) == 2
    with pytest.raises(PluginError, match="independent"):
        propagation_axis(g, "independent", 1)
    with pytest.raises(PluginError, match="no axis"):
        propagation_axis(Geometry((10, 10)), "time", None)


def test_channels_and_vocabulary_parsing():
    two, five = Geometry((2, 10, 10), channel_axis=0), Geometry((5, 10, 10), channel_axis=0)
    assert parse_channels("", two) == (0, 1) and parse_channels("1", five) == (1,)
    assert parse_channels(" 0, 4 ,2", five) == (0, 4, 2) and parse_channels("3", Geometry((10, 10))) is None
    for text, geometry, match in (("", five, "5 channels"), ("a", two, "comma-separated"),
                                  ("0,1,2,3", five, "one to three"), ("2", two, "among 0..1")):
        with pytest.raises(PluginError, match=match):
            parse_channels(text, geometry)
    assert parse_vocabulary(" nucleus, cell,, nucleus ,") == ["nucleus", "cell"]


@pytest.mark.parametrize("direction, frame_range, expected", [
    ("forward", None, (9, 6)),
    ("backward", None, (0, 3)),
    ("both", None, ((0, 9), 9)),
    ("forward", (2, 5), (5, 2)),
    ("both", (1, 4), ((1, 4), 3)),
])
def test_propagation_range(direction, frame_range, expected):
    assert propagation_range(direction, 3, 10, frame_range) == expected


def test_propagation_range_errors():
    with pytest.raises(PluginError, match="outside the frame range"):
        propagation_range("forward", 7, 10, (0, 5))
    with pytest.raises(PluginError, match="nothing to propagate forward"):
        propagation_range("forward", 9, 10, None)
    with pytest.raises(PluginError, match="not within"):
        propagation_range("forward", 0, 10, (0, 12))
    with pytest.raises(PluginError, match="direction"):
        propagation_range("sideways", 0, 10, None)


def test_only_objects_with_changed_prompts_are_segmented_again():
    one, two = ObjectPrompt(points=[Point(1, 1)]), ObjectPrompt(points=[Point(5, 5)])
    last = {1: prompt_key(one), 2: prompt_key(two)}
    assert objects_to_segment({1: one, 2: two}, last, current=2) == [2]  # nothing changed: refine current
    moved = ObjectPrompt(points=[Point(1, 1), Point(2, 2, positive=False)])
    assert objects_to_segment({1: moved, 2: two}, last, current=2) == [1]
    assert objects_to_segment({0: ObjectPrompt(text="cell"), 2: two}, last, current=0) == [0]
    with pytest.raises(PluginError, match="no prompts"):
        objects_to_segment({}, last, current=0)


def test_writes_are_exact_undoable_and_recorded_in_features():
    labels = Labels(np.zeros((2, 8, 8), np.int32))
    labels.data[1, :2, :2] = 4
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True
    change = apply_write(labels, (1,), {5: mask}, "keep")
    assert len(change) == 12 and (labels.data[1, :2, :2] == 4).all() and (labels.data[1] == 5).sum() == 12
    update_features(labels, {5: {"class_name": "cell", "score": 0.7}})
    update_features(labels, {5: {"score": 0.9}, 2: {"class_name": "nucleus"}})
    table = labels.features.set_index("index")
    assert list(table.index) == [2, 5] and table.loc[5, "class_name"] == "cell" and table.loc[5, "score"] == 0.9
    labels.undo()
    assert (labels.data == 5).sum() == 0 and (labels.data[1, :2, :2] == 4).all()
    with pytest.raises(PluginError, match="write mode"):
        apply_write(labels, (1,), {5: mask}, "replace")


def test_new_object_prompts_take_their_id_on_their_plane_only():
    image = Image(np.zeros((3, 10, 10)))
    points = Points(np.array([[1, 2, 2], [2, 3, 3], [1, 4, 4]], float), features={"object": [0, 0, 2]})
    relabel_new_object(points, image, (1,), 7)
    assert points.features["object"].tolist() == [7, 0, 2]


def test_plan_and_write_a_new_object_without_a_viewer(tiny_models):
    image = Image(np.random.default_rng(0).random((20, 24)).astype(np.float32))
    points = Points(np.array([[10.0, 12.0]]), features={"object": [0], "label": ["positive"]})
    labels = Labels(np.zeros((20, 24), np.int32))
    labels.data[0, 0] = 9
    controller = SeemController()
    controller.set_model(tiny_models)
    geometry = layer_geometry(image)
    job = controller.plan_plane(image, geometry, (), points, None, "", 0, ["cell"], None)
    results = controller.run_plane(job)
    ids = controller.write_plane(labels, job, results, "keep")
    expected = results[0].mask.copy()
    expected[0, 0] = False  # keep mode: the user's pixel stays 9
    assert ids == {0: 10} and labels.data[0, 0] == 9
    np.testing.assert_array_equal(labels.data == 10, expected)
    assert controller.memory[((), 10)] is results[0] and "tests' tiny model" in controller.weights
    assert labels.features.set_index("index").loc[10, "class_name"] == "cell"


def test_a_large_dask_plane_is_tiled_and_a_click_reads_only_its_tile(tiny_models):
    import dask.array as da

    from napari_seem.engine.tiling import TiledPredictor

    rng = np.random.default_rng(1)
    big = da.from_array(rng.integers(0, 4000, (1300, 1400), dtype=np.uint16), chunks=256)
    image = Image(big)
    points = Points(np.array([[1200.0, 100.0]]), features={"object": [0], "label": ["positive"]})
    labels = Labels(np.zeros((1300, 1400), np.int32))
    controller = SeemController()
    controller.set_model(tiny_models)
    job = controller.plan_plane(image, layer_geometry(image), (), points, None, "", 0, None, None)
    results = controller.run_plane(job)
    assert isinstance(controller.tiled, TiledPredictor) and controller.tiled.tiles_encoded == 1
    ids = controller.write_plane(labels, job, results, "keep")
    assert results[0].mask.shape == (1300, 1400)
    np.testing.assert_array_equal(labels.data == ids[0], results[0].mask)
    assert not results[0].mask[:500, 700:].any()  # nothing outside the clicked corner's window


def test_model_sources_and_devices(monkeypatch, tmp_path):
    import torch

    sources = models.available_models()
    assert list(sources)[:2] == [models.EMBEDDED_DEFAULT, models.RANDOM_TINY] and "focalt_v1" in sources
    with pytest.raises(models.ModelError, match="unknown model"):
        models.get_source("nope")
    with pytest.raises(models.ModelError, match="not found"):
        models.check_checkpoint(sources["focalt_v1"], str(tmp_path / "x.pt"))
    assert models.check_checkpoint(sources["focalt_v1"], "  ") is None
    assert models.check_checkpoint(sources[models.RANDOM_TINY], "ignored.pt") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert models.resolve_device("auto") == "cuda"
    assert models.resolve_device("CUDA") == "cuda"
    assert models.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(models.ModelError, match="CUDA is not available"):
        models.resolve_device("cuda")
    with pytest.raises(models.ModelError, match="unknown device"):
        models.resolve_device("tpu")
    assert models.resolve_device("auto") in ("mps", "cpu")


def test_a_gpu_choice_loads_the_model_onto_it_and_a_plane_is_segmented_there(tiny_models):
    """On a simulated GPU (``tests/fake_accelerator.py``): the model moves onto it, the statement of
    weights says so, and a click gives the same object as on the CPU."""
    from fake_accelerator import DeviceTensor, simulated_accelerator

    image = Image(np.random.default_rng(0).random((20, 24)).astype(np.float32))
    points = Points(np.array([[10.0, 12.0]]), features={"object": [0], "label": ["positive"]})
    masks = {}
    for device in ("cpu", "auto"):
        with simulated_accelerator():
            controller = SeemController()
            controller.set_model(tiny_models, device=device)
            job = controller.plan_plane(image, layer_geometry(image), (), points, None, "", 0, ["cell"], None)
            masks[device] = controller.run_plane(job)[0].mask
            on_gpu = isinstance(next(controller.loaded.model.parameters()), DeviceTensor)
        assert on_gpu == (device == "auto")
        assert controller.weights.endswith(", on cuda") == (device == "auto")
    np.testing.assert_array_equal(masks["cpu"], masks["auto"])


def test_the_built_in_trial_model_loads_and_says_it_is_random():
    loaded = models.load_model(models.RANDOM_TINY, device="cpu")
    assert "RANDOM weights" in loaded.weights and not loaded.model.training


@pytest.mark.parametrize("role, axis, plane, expected", [
    ("time", None, (3,), "frame 3"),
    ("z", None, (3,), "slice 3"),
    ("independent", None, (3,), "plane 3 of 12"),
])
def test_a_plane_is_named_as_the_stack_axis_says(role, axis, plane, expected):
    assert describe_plane(Geometry((12, 20, 20)), plane, role, axis) == expected


def test_planes_of_stacks_with_more_axes_and_of_2d_images():
    tzyx = Geometry((2, 5, 20, 20))
    assert describe_plane(tzyx, (1, 3), "z", axis=1) == "slice 3 (axis 0 = 1)"
    assert describe_plane(tzyx, (1, 3), "independent") == "plane 8 of 10"
    assert describe_plane(Geometry((2, 5, 20, 20), channel_axis=0), (1, 3), "time") == "frame 3"
    assert describe_plane(Geometry((20, 20)), (), "time") == ""


def test_no_object_is_named_background():
    assert class_name_of("nucleus", ["nucleus", "cell"]) == "nucleus"
    assert class_name_of("background", ["nucleus", "cell"]) == ""
    assert class_name_of("background", ["background", "cell"]) == ""  # not even when listed
    assert class_name_of("cell", ["nucleus"]) == "" and class_name_of(None) == ""

    class Found:  # an engine.EverythingResult whose second instance the background class won
        labels = np.array([[1, 2], [0, 0]], np.int32)
        class_names, scores = ["cell", "background"], [0.8, 0.6]

        def __len__(self):
            return 2

    labels = Labels(np.zeros((2, 2), np.int32))
    SeemController().write_everything(labels, PlaneEverything((), (), Found()), "keep")
    assert labels.features.set_index("index")["class_name"].to_dict() == {1: "cell", 2: ""}


def test_an_image_without_finite_values_is_refused_before_the_model_runs(tiny_models):
    image = Image(np.full((20, 24), np.nan, np.float32))
    image.data[3, 3] = np.inf
    points = Points(np.array([[10.0, 12.0]]), features={"object": [0], "label": ["positive"]})
    controller = SeemController()
    controller.set_model(tiny_models)
    job = controller.plan_plane(image, layer_geometry(image), (), points, None, "", 0, None, None)
    with pytest.raises(PluginError, match="no finite values"):
        controller.run_plane(job)
    assert not controller.model_ready  # refused before loading the model
    image.data[5, 5] = 1.0  # one finite pixel is an image
    assert len(controller.run_plane(job)) == 1


def test_the_controller_runs_the_model_on_its_threads(tiny_models):
    import torch

    controller = SeemController()
    controller.set_model(tiny_models)
    before = torch.get_num_threads()
    try:
        for threads in (2, 1):
            controller.threads = threads
            controller.ensure_model()
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
