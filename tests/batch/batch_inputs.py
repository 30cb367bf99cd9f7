"""Batch test inputs: planes, an input folder with good and bad files, and its prompts file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile

TARGET_SIZE = "64"  # model input size of the tests (fast)


def noisy_plane(seed: int, shape=(48, 64)) -> np.ndarray:
    """A uint16 plane: two bright disks on noise."""
    rng = np.random.default_rng(seed)
    plane = rng.normal(300, 40, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cy, cx, r in ((16, 20, 7), (30, 44, 9)):
        plane[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] += 2000
    return np.clip(plane, 0, 65535).astype(np.uint16)


def write_inputs(folder: Path) -> Path:
    """``folder/images``: two planes, a 4-plane stack, a stack whose frame-3 prompt is outside the image,
    an RGB PNG and a corrupt TIFF; ``folder/prompts.json`` for all of them."""
    from skimage import io

    images = folder / "images"
    images.mkdir(parents=True)
    tifffile.imwrite(images / "a.tif", noisy_plane(1))
    tifffile.imwrite(images / "b.tif", noisy_plane(2))
    tifffile.imwrite(images / "stack.tif", np.stack([noisy_plane(s) for s in range(10, 14)]), photometric="minisblack")
    tifffile.imwrite(images / "bad_prompt_stack.tif", np.stack([noisy_plane(s) for s in range(20, 24)]),
                     photometric="minisblack")
    rgb = np.repeat((noisy_plane(3) // 16).astype(np.uint8)[..., None], 3, axis=-1)
    io.imsave(images / "c.png", rgb, check_contrast=False)
    (images / "corrupt.tif").write_bytes(b"II*\x00\x10\x00\x00\x00junk")  # a TIFF header, then no image
    prompts = {
        "a.tif": [{"points": [[16, 20]]}, {"id": 7, "boxes": [[22, 34, 40, 54]], "text": "cell"}],
        "stack.tif": [{"points": [[16, 20], [30, 44, 0]], "frame": 0},
                      {"scribbles": [[[25, 40], [35, 48]]], "frame": 2},
                      {"id": 3, "text": "nucleus", "frame": 3}],
        "bad_prompt_stack.tif": [{"points": [[16, 20]], "frame": 0}, {"points": [[16, 900]], "frame": 3}],
        "*": [{"points": [[30, 44]]}, {"text": "nucleus"}],
    }
    (folder / "prompts.json").write_text(json.dumps(prompts))
    return images
