"""Shared helpers of the dock-widget tests: the tests' tiny model sources and test images."""

from __future__ import annotations

import time

import numpy as np

from napari_seem.plugin import models
from tiny import tiny_config

TINY = "tiny random (tests)"
SLOW_TINY = "slow tiny random (tests)"
TARGET_SIZE = 256  # small planes at a small model size: each call takes milliseconds


def tiny_loader(delay: float = 0.0):
    """A loader of the tests' tiny model; with ``delay``, every encode sleeps that long (to cancel mid-run)."""

    def load(checkpoint):
        from napari_seem.model import build_with_weights

        model, weights = build_with_weights(tiny_config())
        if delay:
            encode = model.encode

            def slow_encode(image):
                time.sleep(delay)
                return encode(image)

            model.encode = slow_encode
        return models.LoadedModel(model, f"tests' tiny model, {weights}", TARGET_SIZE)

    return load


def blob_image(shape=(64, 80), centre=(30, 40), radius=12, seed=0) -> np.ndarray:
    """A bright disc on a noisy background (float32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    disc = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).astype(np.float32)
    return np.broadcast_to(disc + 0.1 * rng.random(shape, dtype=np.float32), shape).astype(np.float32)
