"""Synthetic gray-brightfield smears: large translucent cells, each with a small dark nucleus.

None of the training sets has this kind of image (stained smears imaged in gray brightfield: big
flat cells whose outlines are the strongest edges, with nuclei a tenth of their size), and the
model trained without it segments the whole cell, or nothing, when a nucleus is clicked. These
images are drawn from scratch (no real image is used) and label the **nuclei** only, so that the
model learns that on such images the dark compact blob is the object, not the cell around it.

Drawing, at ``size`` x ``size`` pixels (1024 by default; the training pipeline rescales to the
model's 512):

- a bright, slightly uneven background (220-245 gray levels) with Gaussian noise;
- 6-22 cells: irregular closed outlines (a radius with a few random harmonics), translucent, so
  overlapping cells darken each other; a darker rim and a grainy texture;
- one nucleus in most cells (sometimes none or two): a rounded blob 5-16 px in radius, dark (about
  40-140 gray levels), grainy, its edge blurred by about a pixel; plus a few free round cells (a nucleus
  with little cytoplasm);
- small faint debris that is not labelled.

``python -m napari_seem.training.synthetic OUT --count 120 --seed 0`` writes a dataset folder
(``images/*.png``, ``labels/*.tif``) that ``napari-seem train --data OUT:nucleus:W`` reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter


def _blob(shape: tuple[int, int], cy: float, cx: float, radius: float, rng: np.random.Generator,
          roughness: float, elongation: float = 1.0) -> np.ndarray:
    """Bool mask of an irregular closed shape: radius ``radius * (1 + harmonics)`` around (cy, cx),
    stretched by ``elongation`` along a random axis."""
    reach = radius * max(elongation, 1.0) * 2.2  # the harmonics stay well inside twice the radius
    y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, shape[0]))
    x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, shape[1]))
    out = np.zeros(shape, bool)
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    dy, dx = yy - cy, xx - cx
    u = (dx * np.cos(angle) + dy * np.sin(angle)) / elongation
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    theta, r = np.arctan2(v, u), np.hypot(u, v)
    edge = np.ones_like(theta)
    for k in range(2, 6):
        edge += roughness / k * rng.normal() * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    out[y0:y1, x0:x1] = r <= radius * edge
    return out


def _texture(shape: tuple[int, int], rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth noise."""
    noise = gaussian_filter(rng.normal(size=shape).astype(np.float32), sigma)
    return noise / (noise.std() + 1e-6)


def smear(rng: np.random.Generator, size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic smear: ``(image uint8 [size, size], labels int32 [size, size])``, nuclei only."""
    shape = (size, size)
    # Transmission: 1 is the bright background, each cell multiplies it down.
    transmission = np.ones(shape, np.float32)
    nuclei = np.zeros(shape, np.int32)
    darkness = np.zeros(shape, np.float32)  # the nuclei's absorbance, drawn after the cells
    count = 0
    grain = 1.0 + 0.1 * _texture(shape, rng, 2.0)  # the cells' cytoplasm
    fine = 1.0 + 0.12 * _texture(shape, rng, 1.2)  # the nuclei's chromatin
    for _ in range(int(rng.integers(6, 23))):
        radius = rng.uniform(0.05, 0.15) * size
        cy, cx = rng.uniform(-0.1, 1.1, 2) * size
        cell = _blob(shape, cy, cx, radius, rng, roughness=0.35, elongation=rng.uniform(1.0, 1.6))
        if not cell.any():
            continue
        absorb = rng.uniform(0.08, 0.3)
        rim = cell & (gaussian_filter(cell.astype(np.float32), 3.0) < 0.99)
        transmission *= np.where(cell, 1.0 - absorb * grain, 1.0) * np.where(rim, 1.0 - rng.uniform(0.05, 0.2), 1.0)
        for _ in range(int(rng.choice([0, 1, 1, 1, 1, 1, 2]))):
            ys, xs = np.nonzero(cell)
            k = int(rng.integers(ys.size))
            count += 1
            _nucleus(shape, ys[k], xs[k], rng, nuclei, darkness, count, cell, fine)
    for _ in range(int(rng.integers(0, 6))):  # free round cells: a nucleus with little cytoplasm
        cy, cx = rng.uniform(0, size, 2)
        count += 1
        _nucleus(shape, cy, cx, rng, nuclei, darkness, count, None, fine)
    for _ in range(int(rng.integers(0, 15))):  # debris: small and faint, not labelled
        speck = _blob(shape, *rng.uniform(0, size, 2), rng.uniform(1.5, 4), rng, roughness=0.5)
        darkness[speck & (nuclei == 0)] += rng.uniform(0.1, 0.3)
    transmission = gaussian_filter(transmission, 0.8) * np.exp(-gaussian_filter(darkness, 0.9))
    background = rng.uniform(220, 245) * (1 + 0.03 * _texture(shape, rng, size / 8))
    image = background * transmission
    image = image + rng.normal(0, rng.uniform(1, 5), shape)
    return np.clip(image, 0, 255).astype(np.uint8), _relabel(nuclei)


def _nucleus(shape, cy, cx, rng, nuclei, darkness, label, cell, fine) -> None:
    """Draw one nucleus at (cy, cx) into ``nuclei`` (label) and ``darkness`` (absorbance), clipped
    to ``cell`` when given; it occludes earlier nuclei."""
    radius = rng.uniform(5, 16)
    mask = _blob(shape, cy, cx, radius, rng, roughness=0.12, elongation=rng.uniform(1.0, 1.5))
    if cell is not None:
        mask &= cell
    if mask.sum() < 12:
        return
    nuclei[mask] = label
    darkness[mask] = rng.uniform(0.5, 1.8) * fine[mask]


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N; ids left with under 12 pixels (occluded) are dropped."""
    counts = np.bincount(labels.ravel())
    keep = np.flatnonzero(counts >= 12)
    keep = keep[keep > 0]
    table = np.zeros(counts.size, labels.dtype)
    table[keep] = np.arange(1, keep.size + 1)
    return table[labels]


def write_folder(out: str | Path, count: int, seed: int = 0, size: int = 1024) -> None:
    """Write ``count`` smears as a dataset folder (``images/smear_NNN.png``, ``labels/smear_NNN.tif``)."""
    import tifffile
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        image, labels = smear(rng, size)
        Image.fromarray(image).save(out / "images" / f"smear_{i:03d}.png")
        tifffile.imwrite(out / "labels" / f"smear_{i:03d}.tif", labels.astype(np.uint16), compression="zlib")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="dataset folder to write")
    parser.add_argument("--count", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args(argv)
    write_folder(args.out, args.count, args.seed, args.size)


if __name__ == "__main__":
    main()
