"""The standard interactive-segmentation protocol (NoC, mIoU per click) for any predictor.

Per object: the first click at the interior point farthest from its boundary, each next click at
the centre of the largest error region (see :mod:`.clicks`), every round prompted with all clicks
so far and the previous result as SEEM's memory (``predictor.predict(..., previous=[...])``), up
to ``max_clicks`` (20). Reported per dataset:

* ``NoC@85`` / ``NoC@90``: mean number of clicks to reach IoU >= 0.85 / 0.90 (``max_clicks`` when
  never reached), and how many objects never reached it;
* ``mIoU@k`` for k = 1..5: mean IoU after k clicks;
* seconds per click (the ``predict`` call, the image encoded already) and per image encode.

An object stops receiving clicks once it has had at least 5 and reached the highest threshold:
later clicks change none of the numbers above. IoU is computed at the image's full resolution.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Iterable, Protocol, Sequence

import numpy as np

from napari_seem.engine.conversion import ObjectResult, mask_iou
from napari_seem.prompts import ObjectPrompt, Point

from .clicks import Click, first_click, next_click

THRESHOLDS = (0.85, 0.90)
MIOU_CLICKS = 5


class Predictor(Protocol):
    """What the protocol needs of a predictor (``SeemPredictor`` has it)."""

    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, prompts: Sequence[ObjectPrompt], previous: Sequence[ObjectResult | None] | None = None
                ) -> list[ObjectResult]: ...


@dataclass
class ObjectTrace:
    """One object's session: IoU and predict time after each click, and the clicks ``(y, x, positive)``."""

    image: str
    object_id: int
    ious: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    clicks: list[tuple[int, int, bool]] = field(default_factory=list)
    other_iou: float = 0.0  # after the first click: the best IoU of the mask with any *other* object


def number_of_clicks(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Clicks needed to reach IoU >= ``threshold`` (1-based), or ``max_clicks`` if never within them."""
    for k, iou in enumerate(ious[:max_clicks], start=1):
        if iou >= threshold:
            return k
    return max_clicks


def iou_after(ious: Sequence[float], clicks: int) -> float:
    """IoU after ``clicks`` clicks; a session that stopped earlier keeps its last IoU."""
    return float(ious[min(clicks, len(ious)) - 1])


def run_object(
    predictor: Predictor,
    target: np.ndarray,
    max_clicks: int = 20,
    stop_iou: float = max(THRESHOLDS),
    min_clicks: int = MIOU_CLICKS,
    name: str = "",
    object_id: int = 0,
    labels: np.ndarray | None = None,
) -> ObjectTrace:
    """Click on one object of the predictor's current image until ``max_clicks``, or until at least
    ``min_clicks`` clicks reached ``stop_iou``; ``target`` is the object's bool mask ``[H, W]``.
    With the image's instance ``labels``, the first mask is also compared with every other object
    (``other_iou``: did the click return a neighbour?)."""
    trace = ObjectTrace(name, object_id)
    clicks: list[Click] = [first_click(target)]
    previous: ObjectResult | None = None
    for k in range(1, max_clicks + 1):
        prompt = ObjectPrompt(points=[Point(c.y, c.x, c.positive) for c in clicks])
        start = time.perf_counter()
        result = predictor.predict([prompt], previous=None if previous is None else [previous])[0]
        trace.seconds.append(time.perf_counter() - start)
        trace.ious.append(mask_iou(result.mask, target))
        if k == 1 and labels is not None:
            trace.other_iou = best_other_iou(result.mask, labels, object_id)
        if k >= min_clicks and trace.ious[-1] >= stop_iou:
            break
        click = next_click(result.mask, target)
        if click is None:  # perfect: further clicks have nothing to correct
            break
        clicks.append(click)
        previous = result
    trace.clicks = [(c.y, c.x, c.positive) for c in clicks[: len(trace.ious)]]
    return trace


def best_other_iou(mask: np.ndarray, labels: np.ndarray, object_id: int) -> float:
    """The best IoU of ``mask`` with an object of ``labels`` other than ``object_id`` (0 if none)."""
    labels = np.asarray(labels)
    ids, overlap = np.unique(labels[mask], return_counts=True)
    keep = (ids != 0) & (ids != object_id)
    if not keep.any():
        return 0.0
    areas = np.bincount(labels.ravel(), minlength=int(ids.max()) + 1)[ids[keep]]
    return float(np.max(overlap[keep] / (areas + mask.sum() - overlap[keep])))


@dataclass
class InteractiveReport:
    """Summary of one dataset (see the module docstring); ``traces`` holds every object's session."""

    dataset: str
    images: int
    objects: int
    noc: dict[str, float]
    failures: dict[str, int]
    miou: dict[str, float]
    seconds_per_click: float
    encode_seconds: float
    max_clicks: int
    traces: list[ObjectTrace] = field(default_factory=list)
    # First click: share of objects whose mask matches another object better than the clicked one.
    neighbour_rate: float = 0.0

    def summary(self) -> dict:
        """Everything but the traces (JSON-friendly)."""
        out = asdict(self)
        out.pop("traces")
        return out


def summarize(dataset: str, traces: list[ObjectTrace], images: int, encode_seconds: float,
              max_clicks: int = 20) -> InteractiveReport:
    """NoC@85/90, failures, mIoU@1..5 and seconds per click of ``traces``."""
    if not traces:
        raise ValueError(f"{dataset}: no objects were evaluated")
    noc, failures = {}, {}
    for threshold in THRESHOLDS:
        key = f"NoC@{round(threshold * 100)}"
        counts = [number_of_clicks(t.ious, threshold, max_clicks) for t in traces]
        noc[key] = float(np.mean(counts))
        failures[key] = int(sum(max(t.ious[:max_clicks]) < threshold for t in traces))
    miou = {f"mIoU@{k}": float(np.mean([iou_after(t.ious, k) for t in traces])) for k in range(1, MIOU_CLICKS + 1)}
    seconds = [s for t in traces for s in t.seconds]
    neighbour = float(np.mean([t.other_iou > t.ious[0] for t in traces]))
    return InteractiveReport(dataset, images, len(traces), noc, failures, miou, float(np.mean(seconds)),
                             encode_seconds, max_clicks, traces, neighbour)


def choose_objects(labels: np.ndarray, max_objects: int | None, min_area: int, rng: np.random.Generator) -> list[int]:
    """Object ids of ``labels`` with at least ``min_area`` pixels; at most ``max_objects`` of them,
    drawn with ``rng`` (sorted)."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    ids = ids[counts >= min_area]
    if max_objects is not None and ids.size > max_objects:
        ids = np.sort(rng.choice(ids, max_objects, replace=False))
    return [int(i) for i in ids]


def evaluate_interactive(
    predictor: Predictor,
    items: Iterable[tuple[str, np.ndarray, np.ndarray]],
    dataset: str = "dataset",
    max_clicks: int = 20,
    max_objects: int | None = None,
    min_area: int = 10,
    seed: int = 0,
    progress=None,
) -> InteractiveReport:
    """Run the protocol on ``items`` (``(name, image, labels)``: a plane and its instance labels).

    ``max_objects``: at most this many objects per image (a seeded random choice; None: all).
    ``min_area``: objects with fewer pixels are skipped (specks no user would click).
    ``progress``: called with ``(image name, traces so far)`` after each image.
    """
    rng = np.random.default_rng(seed)
    traces: list[ObjectTrace] = []
    encode_times = []
    for name, image, labels in items:
        start = time.perf_counter()
        predictor.set_image(image)
        encode_times.append(time.perf_counter() - start)
        labels = np.asarray(labels)
        for object_id in choose_objects(labels, max_objects, min_area, rng):
            traces.append(run_object(predictor, labels == object_id, max_clicks, name=name, object_id=object_id,
                                     labels=labels))
        if progress is not None:
            progress(name, traces)
    return summarize(dataset, traces, len(encode_times), float(np.mean(encode_times)) if encode_times else 0.0,
                     max_clicks)


def format_table(reports: Sequence[InteractiveReport]) -> str:
    """A plain-text table: one row per dataset."""
    keys = [f"NoC@{round(t * 100)}" for t in THRESHOLDS]
    header = f"{'dataset':<28}{'images':>7}{'objects':>8}" + "".join(f"{k:>8}" for k in keys)
    header += "".join(f"{f'mIoU@{k}':>8}" for k in range(1, MIOU_CLICKS + 1)) + f"{'ms/click':>10}{'encode s':>10}"
    header += f"{'neighbour':>10}"
    rows = [header, "-" * len(header)]
    for r in reports:
        row = f"{r.dataset:<28}{r.images:>7}{r.objects:>8}" + "".join(f"{r.noc[k]:>8.2f}" for k in keys)
        row += "".join(f"{r.miou[f'mIoU@{k}']:>8.3f}" for k in range(1, MIOU_CLICKS + 1))
        rows.append(row + f"{r.seconds_per_click * 1000:>10.1f}{r.encode_seconds:>10.3f}{r.neighbour_rate:>10.3f}")
    return "\n".join(rows)
