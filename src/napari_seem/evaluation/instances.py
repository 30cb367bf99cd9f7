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


def matches_at(predicted: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> tuple[int, int, int]:
    """``(matched, instances, objects)``: how many ground-truth objects of ``labels`` have an
    instance of ``predicted`` with IoU above ``threshold`` (>= 0.5: a match is one-to-one), how
    many instances and objects there are. F1 = 2 * matched / (instances + objects)."""
    if threshold < 0.5:
        raise ValueError("matches are one-to-one only for an IoU threshold of at least 0.5")
    matched = sum(iou > threshold for iou in matched_ious(predicted, labels))
    instances = len(np.unique(predicted[predicted > 0]))
    return int(matched), instances, len(np.unique(labels[labels > 0]))
