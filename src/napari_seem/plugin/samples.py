"""Sample data for the napari File > Open Sample menu."""

from __future__ import annotations

import numpy as np


def cell() -> list[tuple]:
    """A phase-contrast cell (``skimage.data.cell``, bundled with scikit-image)."""
    from skimage import data

    return [(data.cell(), {"name": "cell (phase contrast)"}, "image")]


def nuclei_timelapse(frames: int = 12, size: int = 128, seed: int = 0) -> list[tuple]:
    """A synthetic fluorescence time-lapse ``(T, Y, X)`` uint16: blurred nuclei drifting slowly,
    for trying propagation through time."""
    from skimage.filters import gaussian

    rng = np.random.default_rng(seed)
    centres = rng.uniform(16, size - 16, (8, 2))
    drift = rng.normal(0, 1.0, (8, 2))
    radii = rng.uniform(5, 9, 8)
    yy, xx = np.mgrid[:size, :size]
    stack = np.zeros((frames, size, size), np.float32)
    for t in range(frames):
        for (cy, cx), (dy, dx), r in zip(centres, drift, radii):
            stack[t][(yy - cy - t * dy) ** 2 + (xx - cx - t * dx) ** 2 <= r**2] = 1.0
        stack[t] = gaussian(stack[t], 1.5) + rng.normal(0, 0.03, (size, size))
    stack = np.clip(stack, 0, None) * 3000 + 100
    return [(stack.astype(np.uint16), {"name": "nuclei time-lapse (synthetic)"}, "image")]
