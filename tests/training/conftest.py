"""Synthetic instance-labelled images for the training and evaluation tests (fast, no shared data)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile


def synthetic_pair(seed: int, size: int = 96, count: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A uint16 plane of bright disks on a noisy background, and its int32 instance labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    image = rng.normal(200, 20, (size, size))
    yy, xx = np.mgrid[:size, :size]
    for object_id in range(1, count + 1):
        cy, cx = rng.integers(12, size - 12, 2)
        radius = rng.integers(5, 11)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2) & (labels == 0)
        labels[disk] = object_id
        image[disk] += 800
    return np.clip(image, 0, 65535).astype(np.uint16), labels


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
