"""The synthetic gray-brightfield smears: labelled nuclei are the dark compact blobs, the cells
around them are not labelled, and the written folder is a dataset the trainer reads."""

import numpy as np

from napari_seem.training.data import folder_names, read_folder_item
from napari_seem.training.synthetic import smear, write_folder


def test_smear_labels_dark_nuclei_not_cells():
    image, labels = smear(np.random.default_rng(3), size=256)
    assert image.dtype == np.uint8 and image.shape == labels.shape == (256, 256)
    ids = np.unique(labels[labels > 0])
    assert ids.size >= 1 and np.array_equal(ids, np.arange(1, ids.size + 1))  # consecutive ids
    nuclei = labels > 0
    # Nuclei are much darker than the rest; the bright background dominates the image.
    assert np.median(image[nuclei]) < np.median(image[~nuclei]) - 40
    assert np.median(image) > 150
    # Each nucleus is small: nothing near the size of a cell (the labels are not the cells).
    assert np.bincount(labels.ravel())[1:].max() < 0.02 * labels.size


def test_written_folder_is_a_training_set(tmp_path):
    write_folder(tmp_path, count=2, seed=1, size=128)
    names = folder_names(tmp_path)
    assert names == ["smear_000", "smear_001"]
    image, labels = read_folder_item(tmp_path, names[0])
    assert image.shape == labels.shape == (128, 128)
    again, _ = smear(np.random.default_rng(1), size=128)  # seeded: the same first image
    assert np.array_equal(image, again)
