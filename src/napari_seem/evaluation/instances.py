"""Instance segmentations scored against ground truth, object by object."""

from __future__ import annotations

import numpy as np

from napari_seem.engine.conversion import mask_iou


def matched_ious(predicted: np.ndarray, labels: np.ndarray) -> list[float]:
    """For each ground-truth object of ``labels [H, W]`` (ids > 0), the IoU of its best-overlapping
    instance of ``predicted [H, W]`` (0 when none overlaps it)."""
    ious = []
    for i in np.unique(labels[labels > 0]):
        target = labels == i
        candidates = np.unique(predicted[target & (predicted > 0)])
        ious.append(max((mask_iou(predicted == c, target) for c in candidates), default=0.0))
    return ious
