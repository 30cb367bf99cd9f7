""""Find more like this" in a real viewer: a region of a reference image -> new objects on this plane."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from seem_helpers import blob_image

import napari_seem
from napari_seem import provenance
from napari_seem.plugin import models
from napari_seem.plugin.reference import matches

ASSETS = Path(__file__).parents[2] / "src" / "napari_seem" / "io" / "assets"


def test_matches_are_the_parts_of_the_mask_large_enough_largest_first():
    mask = np.zeros((20, 20), bool)
    mask[0:2, 0:2] = True  # 4 px: a speck
    mask[5:10, 5:10] = True  # 25 px
    mask[12:20, 12:20] = True  # 64 px
    parts = matches(mask, min_area=10)
    assert [int(p.sum()) for p in parts] == [64, 25]
    assert matches(np.zeros((5, 5), bool), 1) == []


def test_a_labelled_example_on_another_image_writes_new_objects_and_keeps_user_labels(seem, qtbot, tmp_path):
    viewer, widget = seem
    example = viewer.add_image(blob_image(seed=1), name="example")
    region = np.zeros((64, 80), np.int32)
    region[20:40, 30:50] = 7
    example_labels = viewer.add_labels(region.copy(), name="example labels")
    target = viewer.add_image(blob_image(centre=(34, 44), seed=2), name="cells")
    widget.set_image_layer(target)
    user = np.zeros((64, 80), np.int32)
    user[:6, :6] = 3
    output = viewer.add_labels(user.copy(), name="my labels")
    widget.labels_combo.set_layer(output)

    widget.set_reference(example, example_labels, label=7)
    widget.find_like_reference(wait=True)

    assert not widget.last_error
    assert (output.data[:6, :6] == 3).all()  # the user's object is kept
    new = sorted(set(np.unique(output.data)) - {0, 3})
    assert all(i > 3 for i in new)  # matches are new objects, above every id in use
    assert "like label 7 of 'example labels'" in widget.status_label.text()
    np.testing.assert_array_equal(example_labels.data, region)  # the example is only read
    if new:
        table = output.features.set_index("index")
        assert (table.loc[new, "source"] == "reference").all()
    rounds = output.metadata[provenance.METADATA_KEY]["rounds"]
    assert rounds[-1]["kind"] == "reference" and rounds[-1]["source"].startswith("label 7")

    output.save(str(tmp_path / "out.tif"), plugin="napari-seem")
    references = provenance.load_references(tmp_path / "out.provenance.npz")
    assert len(references) == 1  # the example's image, for replay
    replayed = napari_seem.replay(tmp_path / "out.provenance.json", target.data, model=widget.controller.loaded.model,
                                  references=references)
    saved = tifffile.imread(tmp_path / "out.tif")
    assert provenance.load(tmp_path / "out.provenance.json").header["labels_before_first_round"] == [3]
    # Object 3 was painted before the first round, so it is not replayed, and the match gets the
    # first free id there: the same pixels under another id.
    outside = np.ones_like(saved, bool)
    outside[:6, :6] = False
    np.testing.assert_array_equal(replayed.labels[outside] > 0, saved[outside] > 0)


def test_a_shape_on_another_frame_of_the_same_stack_is_the_example(seem, qtbot):
    from napari_seem.plugin.samples import nuclei_timelapse

    viewer, widget = seem
    data, _, _ = nuclei_timelapse(frames=4, size=64)[0]
    stack = viewer.add_image(data, name="cells")
    widget.set_image_layer(stack)
    shapes = viewer.add_shapes(name="example outline", ndim=3)
    shapes.add_rectangles(np.array([[2, 10, 10], [2, 10, 30], [2, 30, 30], [2, 30, 10]], float))
    viewer.dims.set_point(0, 0)
    widget.set_reference(stack, shapes, frame=2)

    from napari_seem.plugin.reference import plan_reference

    planned = plan_reference(stack, *widget._context()[1:3], None, stack, shapes, None, viewer.dims.point, 2)
    np.testing.assert_array_equal(planned.reference_image, data[2])
    assert planned.region[10:31, 10:31].all() and planned.region.sum() == 21 * 21
    assert planned.plane == (0,)
    widget.find_like_reference(wait=True)
    assert not widget.last_error
    assert widget.status_label.text().startswith("frame 0: like shapes of 'example outline'")


def test_an_empty_example_region_is_refused_plainly(seem, errors, qtbot):
    viewer, widget = seem
    image = viewer.add_image(blob_image(), name="cells")
    widget.set_image_layer(image)
    empty = viewer.add_labels(np.zeros((64, 80), np.int32), name="nothing")
    widget.set_reference(image, empty, label=1)
    with pytest.raises(Exception, match="reference region is empty"):
        widget.find_like_reference(wait=True)
    assert "reference region is empty" in errors[-1]
    assert widget.labels_layer is None or not widget.labels_layer.data.any()  # nothing written


def test_the_default_model_finds_nuclei_like_the_example(make_napari_viewer, seem_manifest, errors, qtbot):
    from skimage.io import imread

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-seem", "SEEM segmentation")
    widget.set_model(models.EMBEDDED_DEFAULT)
    image = np.asarray(imread(ASSETS / "nuclei_dsb2018_009.png"))
    truth = tifffile.imread(ASSETS / "nuclei_dsb2018_009_labels.tif")
    layer = viewer.add_image(image, name="nuclei", rgb=image.ndim == 3)
    widget.set_image_layer(layer)
    ids, areas = np.unique(truth, return_counts=True)
    example = int(ids[1:][np.argsort(areas[1:])[len(ids) // 2]])  # a nucleus of median size
    truth_layer = viewer.add_labels(truth, name="truth")
    widget.set_reference(layer, truth_layer, label=example)
    widget.labels_combo.set_layer(None)  # a new output layer
    widget.find_like_reference(wait=True)
    assert not widget.last_error
    out = widget.labels_layer.data
    found = sorted(set(np.unique(out)) - {0})
    assert found
    best = []
    for i in found:
        part = out == i
        overlap = truth[part]
        gt = np.bincount(overlap[overlap > 0]).argmax() if (overlap > 0).any() else 0
        best.append(0.0 if gt == 0 else (part & (truth == gt)).sum() / (part | (truth == gt)).sum())
    assert max(best) > 0.5  # at least one match is a nucleus
