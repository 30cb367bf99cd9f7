"""Synthetic instance-labelled images for the training and evaluation tests (fast, no shared data)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from synthetic_instances import synthetic_pair


@pytest.fixture
def synthetic_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    return [synthetic_pair(seed) for seed in range(3)]


@pytest.fixture
def synthetic_folder(tmp_path):
    """A dataset folder in the shared layout: images/*.tif, labels/*.tif and manifest.csv."""
    root = tmp_path / "synthetic"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    names = ["syn_a", "syn_b", "syn_c"]
    for seed, name in enumerate(names):
        image, labels = synthetic_pair(seed)
        tifffile.imwrite(root / "images" / f"{name}.tif", image)
        tifffile.imwrite(root / "labels" / f"{name}.tif", labels.astype(np.uint16))
    (root / "manifest.csv").write_text("name,kind\n" + "".join(f"{n},synthetic\n" for n in names))
    return root
