"""Training data: instance-labelled microscopy images, augmented crops, weighted dataset mixing.

Sources:

* :class:`FolderDataset`: the shared data layout, ``images/<name>.{png,tif,...}`` with
  ``labels/<name>.{tif,png}`` instance label images (0 = background, 1..n = objects); the order and
  names come from ``manifest.csv`` (column ``name``) when there is one.
* :class:`ArrayDataset`: in-memory ``(image, labels)`` pairs, e.g. layers handed over by the napari
  fine-tuning widget.

Every image is prepared exactly as the predictor prepares it (:func:`engine.image.prepare_image`:
channel choice, percentile stretch to 0..255, long side resized to ``target_size``), so the model
trains at the scale and intensity range it will see. The prepared image is cached per item; crops,
scale jitter, flips, 90 degree rotations and intensity jitter are then drawn per training example
(:func:`augment`). :class:`MixedDataset` draws images from several datasets with weights.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from napari_seem.engine.conversion import resize_nearest
from napari_seem.engine.image import DEFAULT_TARGET_SIZE, prepare_image

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LABEL_SUFFIXES = (".tif", ".tiff", ".png")


# ---------------------------------------------------------------------------------------- files
def read_image(path: str | Path) -> np.ndarray:
    """A TIFF (tifffile) or other image file (scikit-image) as a numpy array."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return tifffile.imread(path)
    from skimage import io

    return io.imread(path)


def _find_file(folder: Path, stem: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def folder_names(root: str | Path) -> list[str]:
    """Item names of a dataset folder: ``manifest.csv``'s ``name`` column, else the sorted image stems
    that have a label file."""
    root = Path(root)
    manifest = root / "manifest.csv"
    if manifest.is_file():
        with manifest.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and "name" in rows[0]:
            return [row["name"] for row in rows]
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{root} has no images/ folder")
    stems = sorted({p.stem for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES})
    return [s for s in stems if _find_file(root / "labels", s, LABEL_SUFFIXES) is not None]


def read_folder_item(root: str | Path, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(image, labels)`` of item ``name`` of a dataset folder."""
    root = Path(root)
    image_path = _find_file(root / "images", name, IMAGE_SUFFIXES)
    label_path = _find_file(root / "labels", name, LABEL_SUFFIXES)
    if image_path is None or label_path is None:
        raise FileNotFoundError(f"{root}: no image and label file for {name!r} (images/, labels/)")
    return read_image(image_path), read_image(label_path)


# ---------------------------------------------------------------------------------------- samples
@dataclass
class Sample:
    """One prepared image. ``image``: float32 ``[3, H, W]`` in 0..255 at model scale; ``labels``:
    int32 ``[H, W]`` instance ids (0 = background); every object is class ``class_index`` of
    ``vocabulary``."""

    image: np.ndarray
    labels: np.ndarray
    name: str
    vocabulary: tuple[str, ...]
    class_index: int = 0


class InstanceDataset:
    """Base: named items, each prepared once (cached) into a :class:`Sample`. ``limits``: fixed
    intensity stretch limits (None: each image's percentiles, as the predictor does)."""

    limits: tuple[float, float] | None = None

    def __init__(
        self,
        class_name: str | Sequence[str],
        channels: Sequence[int] | int | None = None,
        channel_axis: int | None = None,
        target_size: int = DEFAULT_TARGET_SIZE,
    ) -> None:
        self.vocabulary = (class_name,) if isinstance(class_name, str) else tuple(class_name)
        if not self.vocabulary or any(not n.strip() for n in self.vocabulary):
            raise ValueError(f"class names must be non-blank strings, got {class_name!r}")
        self.channels = channels
        self.channel_axis = channel_axis
        self.target_size = target_size
        self.names: list[str] = []
        self._cache: dict[int, Sample] = {}

    def __len__(self) -> int:
        return len(self.names)

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(image, labels)`` of item ``index`` as stored (subclasses)."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        sample = self._cache.get(index)
        if sample is None:
            sample = self._cache[index] = self._prepare(index)
        return sample

    def _prepare(self, index: int) -> Sample:
        image, labels = self.raw(index)
        labels = np.asarray(labels)
        prepared = prepare_image(image, self.channel_axis, self.channels, self.target_size, limits=self.limits)
        if labels.shape != prepared.original_shape:
            raise ValueError(f"{self.names[index]}: labels {labels.shape} do not match the image plane "
                             f"{prepared.original_shape}")
        resized = resize_nearest(labels.astype(np.int32), prepared.model_shape)
        return Sample(prepared.rgb, np.ascontiguousarray(resized), self.names[index], self.vocabulary)

    def describe(self) -> dict:
        """What the dataset is, for a checkpoint's record (JSON-friendly)."""
        return {"count": len(self), "names": list(self.names), "vocabulary": list(self.vocabulary),
                "channels": self.channels, "target_size": self.target_size}


class FolderDataset(InstanceDataset):
    """A dataset folder (``images/``, ``labels/``, optional ``manifest.csv``). ``exclude``: item
    names to leave out (held-out images); ``include``: keep only these names."""

    def __init__(
        self,
        root: str | Path,
        class_name: str | Sequence[str] = "object",
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        **kwargs,
    ) -> None:
        super().__init__(class_name, **kwargs)
        self.root = Path(root)
        names = folder_names(self.root)
        unknown = sorted(set(include or ()) - set(names))
        if unknown:
            raise ValueError(f"{self.root}: unknown item names {unknown}")
        self.excluded = [n for n in names if n in set(exclude) or (include is not None and n not in include)]
        self.names = [n for n in names if n not in self.excluded]
        if not self.names:
            raise ValueError(f"{self.root}: no items left to use")

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return read_folder_item(self.root, self.names[index])

    def describe(self) -> dict:
        return {"kind": "folder", "path": str(self.root.resolve()), "excluded": self.excluded, **super().describe()}


class ArrayDataset(InstanceDataset):
    """In-memory ``(image, labels)`` pairs (``labels``: integer instance ids, the image plane's shape)."""

    def __init__(
        self,
        pairs: Sequence[tuple[np.ndarray, np.ndarray]],
        class_name: str | Sequence[str] = "object",
        names: Sequence[str] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(class_name, **kwargs)
        self.pairs = list(pairs)
        if not self.pairs:
            raise ValueError("no (image, labels) pairs given")
        self.names = list(names) if names is not None else [f"array_{i:03d}" for i in range(len(self.pairs))]
        if len(self.names) != len(self.pairs):
            raise ValueError(f"{len(self.names)} names for {len(self.pairs)} pairs")

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.pairs[index]

    def describe(self) -> dict:
        return {"kind": "in-memory", **super().describe()}


class MixedDataset:
    """Draws samples from several datasets: a dataset with probability proportional to its weight,
    then one of its items uniformly."""

    def __init__(self, datasets: Sequence[InstanceDataset], weights: Sequence[float] | None = None) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("no datasets to mix")
        weights = [1.0] * len(self.datasets) if weights is None else [float(w) for w in weights]
        if len(weights) != len(self.datasets) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"need one non-negative weight per dataset (not all 0), got {weights}")
        self.weights = np.asarray(weights) / sum(weights)

    def sample(self, rng: np.random.Generator) -> Sample:
        dataset = self.datasets[int(rng.choice(len(self.datasets), p=self.weights))]
        return dataset[int(rng.integers(len(dataset)))]

    def describe(self) -> list[dict]:
        return [{**d.describe(), "weight": float(w)} for d, w in zip(self.datasets, self.weights)]


# ---------------------------------------------------------------------------------------- augmentation
@dataclass(frozen=True)
class Augmentation:
    """Random crop at model scale with scale jitter, flips, 90 degree rotations and intensity jitter.

    ``scale``: range of the zoom factor (log-uniform). ``brightness``: shift in units of the 0..255
    range. ``contrast``/``gamma``: ranges (log-uniform). ``noise``: std of Gaussian noise as a
    fraction of 255, applied with probability 0.3. ``grayscale``: probability of turning a colour
    image gray. ``invert``: probability of inverting the intensities (bright nuclei on a dark field
    become dark nuclei on a bright one, as in brightfield; none of the training sets has gray
    brightfield). ``min_area``: objects with fewer pixels in the crop are dropped (background)."""

    crop_size: int = 256
    scale: tuple[float, float] = (0.8, 1.25)
    flips: bool = True
    rotations: bool = True
    brightness: float = 0.08
    contrast: tuple[float, float] = (0.75, 1.33)
    gamma: tuple[float, float] = (0.7, 1.4)
    noise: float = 0.03
    grayscale: float = 0.2
    invert: float = 0.0
    min_area: int = 4
    crop_tries: int = 10


@dataclass
class Example:
    """One augmented crop. ``image``: float32 ``[3, S, S]`` 0..255; ``masks``: bool ``[G, S, S]`` (G
    may be 0); ``classes``: long ``[G]`` indices into ``vocabulary``."""

    image: torch.Tensor
    masks: torch.Tensor
    classes: torch.Tensor
    vocabulary: tuple[str, ...]
    name: str


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def _window(labels: np.ndarray, size: int, rng: np.random.Generator, tries: int) -> tuple[int, int]:
    """Top-left ``(y, x)`` of a ``size`` window (may reach past the image; padded later) that holds
    some object: random positions first, then one centred on a random object pixel."""
    height, width = labels.shape
    span_y, span_x = max(height - size, 0), max(width - size, 0)
    for _ in range(tries):
        y, x = int(rng.integers(span_y + 1)), int(rng.integers(span_x + 1))
        if labels[y : y + size, x : x + size].any():
            return y, x
    ys, xs = np.nonzero(labels)
    if ys.size == 0:
        return int(rng.integers(span_y + 1)), int(rng.integers(span_x + 1))
    k = int(rng.integers(ys.size))
    return int(np.clip(ys[k] - size // 2, 0, span_y)), int(np.clip(xs[k] - size // 2, 0, span_x))


def _cut(array: np.ndarray, y: int, x: int, size: int, fill) -> np.ndarray:
    """``array[..., y:y+size, x:x+size]``, padded with ``fill`` where it runs past the image."""
    out = np.empty((*array.shape[:-2], size, size), dtype=array.dtype)
    out[...] = fill
    piece = array[..., y : y + size, x : x + size]
    out[..., : piece.shape[-2], : piece.shape[-1]] = piece
    return out


def _jitter_intensity(image: torch.Tensor, aug: Augmentation, rng: np.random.Generator) -> torch.Tensor:
    """Gamma, contrast, brightness, noise, colour-to-gray and inversion on ``[3, S, S]`` 0..255."""
    x = image / 255.0
    if aug.grayscale and rng.random() < aug.grayscale:
        x = x.mean(0, keepdim=True).expand_as(x)
    if aug.invert and rng.random() < aug.invert:
        x = 1.0 - x
    x = x.clamp(0, 1) ** _log_uniform(rng, aug.gamma)
    mean = x.mean()
    x = (x - mean) * _log_uniform(rng, aug.contrast) + mean + rng.uniform(-aug.brightness, aug.brightness)
    if aug.noise and rng.random() < 0.3:
        x = x + torch.randn(x.shape, generator=torch.Generator().manual_seed(int(rng.integers(2**31)))) * aug.noise
    return (x.clamp(0, 1) * 255.0).contiguous()


def augment(sample: Sample, aug: Augmentation, rng: np.random.Generator) -> Example:
    """A random ``aug.crop_size`` crop of ``sample`` with all augmentations applied."""
    size = aug.crop_size
    zoom = _log_uniform(rng, aug.scale)
    window = max(int(round(size / zoom)), 8)  # the crop covers `window` pixels of the prepared image
    y, x = _window(sample.labels, window, rng, aug.crop_tries)
    # Past the image border: each channel's mean (a neutral value, not a black frame).
    image = _cut(sample.image, y, x, window, sample.image.reshape(3, -1).mean(1)[:, None, None])
    labels = _cut(sample.labels, y, x, window, 0)
    if window != size:
        image = F.interpolate(torch.from_numpy(image)[None], size=(size, size), mode="bilinear",
                              align_corners=False, antialias=window > size)[0].numpy()
        labels = resize_nearest(labels, (size, size))
    image_t, labels_t = torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(labels))
    if aug.flips and rng.random() < 0.5:
        image_t, labels_t = image_t.flip(-1), labels_t.flip(-1)
    if aug.flips and rng.random() < 0.5:
        image_t, labels_t = image_t.flip(-2), labels_t.flip(-2)
    if aug.rotations:
        k = int(rng.integers(4))
        image_t, labels_t = torch.rot90(image_t, k, (-2, -1)), torch.rot90(labels_t, k, (-2, -1))
    image_t = _jitter_intensity(image_t, aug, rng)
    masks = instance_masks(labels_t, aug.min_area)
    classes = torch.full((masks.shape[0],), sample.class_index, dtype=torch.long)
    return Example(image_t, masks, classes, sample.vocabulary, sample.name)


def instance_masks(labels: torch.Tensor, min_area: int = 1) -> torch.Tensor:
    """Bool ``[G, H, W]``: one mask per instance id of ``labels [H, W]`` with >= ``min_area`` pixels."""
    ids, counts = torch.unique(labels, return_counts=True)
    keep = ids[(ids != 0) & (counts >= min_area)]
    return labels[None] == keep[:, None, None]


# ---------------------------------------------------------------------------------------- batches
@dataclass
class Batch:
    """``images``: float32 ``[B, 3, S, S]`` 0..255; per image: ``masks`` bool ``[G_b, S, S]``,
    ``classes`` long ``[G_b]``, ``vocabularies`` and ``names``."""

    images: torch.Tensor
    masks: list[torch.Tensor]
    classes: list[torch.Tensor]
    vocabularies: list[tuple[str, ...]]
    names: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.images.to(device), [m.to(device) for m in self.masks],
                     [c.to(device) for c in self.classes], self.vocabularies, self.names)


def make_batch(source: MixedDataset, batch_size: int, aug: Augmentation, rng: np.random.Generator) -> Batch:
    """``batch_size`` augmented examples, each with at least one object (up to 5 redraws each)."""
    examples = []
    for _ in range(batch_size):
        for _ in range(5):
            example = augment(source.sample(rng), aug, rng)
            if example.masks.shape[0] > 0:
                break
        examples.append(example)
    return Batch(
        torch.stack([e.image for e in examples]),
        [e.masks for e in examples],
        [e.classes for e in examples],
        [e.vocabulary for e in examples],
        [e.name for e in examples],
    )
