"""Training data: folder and in-memory datasets, augmented crops, weighted mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_seem.engine.image import prepare_image
from napari_seem.training.data import (
    ArrayDataset,
    Augmentation,
    FolderDataset,
    MixedDataset,
    augment,
    folder_names,
    make_batch,
)


def test_folder_dataset_reads_the_shared_layout_and_holds_out_names(synthetic_folder):
    assert folder_names(synthetic_folder) == ["syn_a", "syn_b", "syn_c"]
    dataset = FolderDataset(synthetic_folder, "nucleus", exclude=["syn_b"], target_size=128)
    assert dataset.names == ["syn_a", "syn_c"] and len(dataset) == 2
    sample = dataset[0]
    # Prepared exactly as the predictor prepares it: same stretch, same resize.
    expected = prepare_image(np.asarray(__import__("tifffile").imread(synthetic_folder / "images" / "syn_a.tif")),
                             target_size=128)
    np.testing.assert_array_equal(sample.image, expected.rgb)
    assert sample.labels.shape == (128, 128) and sample.labels.max() >= 1
    described = dataset.describe()
    assert described["kind"] == "folder" and described["count"] == 2 and described["excluded"] == ["syn_b"]
    with pytest.raises(ValueError, match="no items"):
        FolderDataset(synthetic_folder, exclude=["syn_a", "syn_b", "syn_c"])


def test_array_dataset_checks_label_shapes(synthetic_pairs):
    image, labels = synthetic_pairs[0]
    with pytest.raises(ValueError, match="do not match"):
        ArrayDataset([(image, labels[:50])], "cell")[0]
    assert ArrayDataset(synthetic_pairs, "cell").describe()["kind"] == "in-memory"


def test_augmented_crops_have_the_training_size_and_consistent_masks(synthetic_pairs):
    dataset = ArrayDataset(synthetic_pairs, "nucleus", target_size=96)
    rng = np.random.default_rng(0)
    for _ in range(10):
        example = augment(dataset[int(rng.integers(3))], Augmentation(crop_size=64), rng)
        assert example.image.shape == (3, 64, 64) and example.image.dtype == torch.float32
        assert 0 <= float(example.image.min()) and float(example.image.max()) <= 255
        assert example.masks.shape[1:] == (64, 64) and example.masks.shape[0] >= 1
        assert int(example.masks.sum(0).max()) == 1  # instances do not overlap
        # Objects are bright disks: the crop's image is brighter inside the masks than outside.
        inside = example.masks.any(0)
        assert example.image.mean(0)[inside].mean() > example.image.mean(0)[~inside].mean()


def test_mixing_follows_the_weights(synthetic_pairs):
    first = ArrayDataset(synthetic_pairs[:1], "nucleus", names=["first"], target_size=64)
    second = ArrayDataset(synthetic_pairs[1:], "cell", target_size=64)
    rng = np.random.default_rng(0)
    assert {MixedDataset([first, second], [1, 0]).sample(rng).name for _ in range(20)} == {"first"}
    batch = make_batch(MixedDataset([first, second]), 6, Augmentation(crop_size=32), rng)
    assert batch.images.shape == (6, 3, 32, 32) and len(batch.masks) == 6
    assert set(batch.vocabularies) <= {("nucleus",), ("cell",)}
    with pytest.raises(ValueError, match="weight"):
        MixedDataset([first, second], [1])


def test_inverted_crops_show_dark_objects_on_a_bright_field(synthetic_pairs):
    dataset = ArrayDataset(synthetic_pairs, "nucleus", target_size=96)
    plain = Augmentation(crop_size=64, invert=1.0, brightness=0.0, contrast=(1.0, 1.0), gamma=(1.0, 1.0),
                         noise=0.0, grayscale=0.0)
    example = augment(dataset[0], plain, np.random.default_rng(0))
    inside = example.masks.any(0)
    assert example.image.mean(0)[inside].mean() < example.image.mean(0)[~inside].mean()
