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
