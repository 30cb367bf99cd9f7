"""Synthetic instance-labelled planes for tests (a module of its own: ``conftest`` is a name
several test folders share, so importing it picks whichever was loaded first)."""

from __future__ import annotations

import numpy as np


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


# A synthetic confocal-like z-stack with known extents (tests of the "z" stack kind).
NUCLEI = {1: ((8, 30, 32), 7, 16), 2: ((14, 62, 60), 6, 14)}  # id: (centre z, y, x), z half-height, xy radius


def sphere_stack(shape=(24, 96, 96), seed=0) -> tuple[np.ndarray, np.ndarray]:
    """``(frames uint16 (Z, Y, X), labels (Z, Y, X))`` of the nuclei of ``NUCLEI``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    labels = np.zeros(shape, np.uint16)
    for n, ((cz, cy, cx), half, radius) in NUCLEI.items():
        labels[((z - cz) / (half + 0.5)) ** 2 + ((y - cy) / radius) ** 2 + ((x - cx) / radius) ** 2 <= 1] = n
    light = gaussian_filter((labels > 0).astype(np.float32), 1.0)
    frames = (200 * light + 20 + 8 * rng.standard_normal(shape)).clip(0).astype(np.uint16)
    return frames, labels
