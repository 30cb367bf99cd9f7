"""Simulated clicks of the standard interactive-segmentation protocol (numpy only).

* The **first click** goes to the interior point farthest from the object's boundary: the maximum
  of the Euclidean distance transform of the mask, the image border counting as boundary.
* **Each next click** goes to the centre of the largest error region: the false-negative pixels
  (object missed: a positive click) and the false-positive pixels (background taken: a negative
  click) each get a distance transform; the click goes to the maximum of the larger of the two.
  "Largest" is thus measured by the radius of the biggest disk that fits in the error, as in the
  RITM / SimpleClick / SEEM evaluation code, so a thin sliver along a correct boundary never wins
  over a real missed part. Ties go to the first pixel in row-major order (deterministic).

Masks are bool ``[H, W]``; points are integer ``(y, x)`` pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt


@dataclass(frozen=True)
class Click:
    """A simulated click at pixel ``(y, x)``; ``positive`` = "this is the object"."""

    y: int
    x: int
    positive: bool = True


def inner_distance(mask: np.ndarray) -> np.ndarray:
    """Distance of each pixel of ``mask`` to the nearest pixel outside it, the image border counting
    as outside (a zero frame is added, so an object touching the border is not centred on it)."""
    padded = np.pad(np.asarray(mask, dtype=bool), 1)
    return distance_transform_edt(padded)[1:-1, 1:-1]


def _bounding_slices(mask: np.ndarray, margin: int = 1) -> tuple[slice, slice] | None:
    """Bounding box of ``mask`` grown by ``margin`` (clipped), or None when the mask is empty.

    The distance transform inside the box equals the full one for pixels of the mask whenever the
    box touches the image border or leaves ``margin`` >= 1 of background around the mask, so the
    transforms are computed on the box only (large planes: most pixels are far from any error)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return None
    return (
        slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, mask.shape[0])),
        slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, mask.shape[1])),
    )


def _argmax_distance(mask: np.ndarray) -> tuple[float, tuple[int, int]]:
    """``(largest inner distance, its (y, x))`` of ``mask``; ``(0, (-1, -1))`` when empty."""
    box = _bounding_slices(mask)
    if box is None:
        return 0.0, (-1, -1)
    dist = inner_distance(mask[box])
    flat = int(dist.argmax())
    y, x = divmod(flat, dist.shape[1])
    return float(dist.flat[flat]), (int(y + box[0].start), int(x + box[1].start))


def first_click(mask: np.ndarray) -> Click:
    """The interior point of ``mask`` farthest from its boundary (a positive click)."""
    distance, (y, x) = _argmax_distance(np.asarray(mask, dtype=bool))
    if distance == 0:
        raise ValueError("cannot click on an empty mask")
    return Click(y, x, True)


def next_click(prediction: np.ndarray, target: np.ndarray) -> Click | None:
    """The click at the centre of the largest error of ``prediction`` against ``target`` (both bool
    ``[H, W]``): positive in a missed region, negative in a false-positive region; None if they agree."""
    prediction = np.asarray(prediction, dtype=bool)
    target = np.asarray(target, dtype=bool)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    fn_distance, fn_point = _argmax_distance(target & ~prediction)
    fp_distance, fp_point = _argmax_distance(prediction & ~target)
    if fn_distance == 0 and fp_distance == 0:
        return None
    if fn_distance >= fp_distance:
        return Click(*fn_point, positive=True)
    return Click(*fp_point, positive=False)
