"""Training pairs for fine-tuning, from napari layers or folders of TIFFs (no Qt, no torch).

A training pair is one 2D image plane and its instance labels (0 = background, 1..n = objects),
what :class:`~napari_seem.training.DatasetSpec` takes as ``pairs``. Stacks are split into planes:
every plane (time point, z slice...) whose labels hold at least one object becomes a pair, and
planes without labels are skipped (an unannotated plane is not "all background").

* :func:`layer_pairs`: an image layer and a labels layer of the same grid. The image's axes are
  read as the segmentation widget reads them (:class:`~napari_seem.plugin.controller.Geometry`):
  leading axes, an optional channel axis among them, y and x, and the RGB colour axis.
* :func:`folder_pairs`: an images folder and a labels folder of TIFFs matched by file name; each
  file is a 2D plane (gray or RGB) or a stack of planes with a labels stack of the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .controller import Geometry, PluginError, layer_geometry, parse_channels

TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class TrainingPairs:
    """``pairs``: ``(image plane, int32 labels [H, W])``; ``names``: one per pair (``"cells[3]"`` for
    plane 3 of layer ``cells``); ``channel_axis``/``channels``: how to read every image plane (as for
    ``prepare_image``); ``skipped``: names of the planes left out because they hold no labels."""

    pairs: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    channel_axis: int | None = None
    channels: tuple[int, ...] | None = None
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def objects(self) -> int:
        """Number of labelled objects over all pairs (each plane's ids counted separately)."""
        return int(sum(len(np.unique(labels)) - int((labels == 0).any()) for _, labels in self.pairs))

    def extend(self, other: "TrainingPairs") -> None:
        if len(self) and (other.channel_axis, other.channels) != (self.channel_axis, self.channels):
            raise PluginError("all training images must be read with the same channel choice")
        self.pairs += other.pairs
        self.names += other.names
        self.skipped += other.skipped
        self.channel_axis, self.channels = other.channel_axis, other.channels


# ---------------------------------------------------------------------------------------- layers
def layer_pairs(image: Any, labels: Any, channel_axis: int | None = None,
                channels_text: str | None = None) -> TrainingPairs:
    """The labelled planes of an image layer and a labels layer (duck-typed: ``data``, ``name``,
    ``rgb``, ``multiscale``); ``channel_axis``/``channels_text`` as in the segmentation widget."""
    if labels is None:
        raise PluginError("no labels: add a labels layer with the objects painted (one id per object)")
    geometry = layer_geometry(image, channel_axis)
    shape = tuple(int(s) for s in labels.data.shape)
    if shape != geometry.labels_shape:
        raise PluginError(f"labels layer {labels.name!r} has shape {shape}, but image {image.name!r} needs "
                          f"{geometry.labels_shape} (the image's shape without its channel/colour axis)")
    _check_integer(labels.data, labels.name)
    found = TrainingPairs(channel_axis=geometry.plane_channel_axis, channels=parse_channels(channels_text, geometry))
    for plane in geometry.planes((0,) * (geometry.ndim - 2)):
        where = geometry.labels_plane(plane)
        name = f"{image.name}[{','.join(map(str, where))}]" if where else image.name
        _add_plane(found, np.asarray(image.data[geometry.image_index(plane)]), labels.data[where], name)
    _check_found(found, f"labels layer {labels.name!r}")
    return found


# ---------------------------------------------------------------------------------------- folders
def folder_pairs(images_dir: str | Path, labels_dir: str | Path) -> TrainingPairs:
    """The labelled planes of the TIFFs in ``images_dir`` and their namesakes in ``labels_dir``
    (``a.tif`` with ``a.tif`` or ``a.tiff``). A 3D image whose last axis has 3 or 4 entries is one
    RGB plane; any other 3D or 4D image is a stack of gray planes."""
    import tifffile

    images_dir, labels_dir = Path(images_dir).expanduser(), Path(labels_dir).expanduser()
    for folder, what in ((images_dir, "images"), (labels_dir, "labels")):
        if not folder.is_dir():
            raise PluginError(f"{what} folder not found: {folder}")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
    if not images:
        raise PluginError(f"no TIFF files (*.tif, *.tiff) in {images_dir}")
    found, unmatched = TrainingPairs(), []
    for image_path in images:
        label_path = next((labels_dir / (image_path.stem + s) for s in TIFF_SUFFIXES
                           if (labels_dir / (image_path.stem + s)).is_file()), None)
        if label_path is None:
            unmatched.append(image_path.name)
            continue
        found.extend(stack_pairs(tifffile.imread(image_path), tifffile.imread(label_path), image_path.stem))
    if unmatched and not found.pairs:
        raise PluginError(f"no labels in {labels_dir} for the images of {images_dir} (labels are matched by "
                          f"file name, e.g. {unmatched[0]})")
    found.skipped += [f"{name} (no labels file)" for name in unmatched]
    _check_found(found, f"labels folder {labels_dir}")
    return found


def stack_pairs(image: np.ndarray, labels: np.ndarray, name: str) -> TrainingPairs:
    """The labelled planes of one image array (2D, RGB ``(Y, X, 3|4)``, or a stack of gray planes)
    and its labels array (the image's shape without the colour axis)."""
    image, labels = np.asarray(image), np.asarray(labels)
    rgb = image.ndim == labels.ndim + 1 and image.shape[-1] in (3, 4)
    expected = image.shape[:-1] if rgb else image.shape
    if labels.shape != expected or labels.ndim < 2:
        raise PluginError(f"{name}: labels of shape {labels.shape} do not fit the image of shape {image.shape}")
    _check_integer(labels, name)
    geometry = Geometry(tuple(image.shape), rgb)
    found = TrainingPairs()
    for plane in geometry.planes((0,) * (geometry.ndim - 2)):
        plane_name = f"{name}[{','.join(map(str, plane))}]" if plane else name
        _add_plane(found, image[geometry.image_index(plane)], labels[plane], plane_name)
    return found


# ---------------------------------------------------------------------------------------- helpers
def _add_plane(found: TrainingPairs, image_plane: np.ndarray, labels_plane: Any, name: str) -> None:
    labels_plane = np.asarray(labels_plane)
    if not labels_plane.any():
        found.skipped.append(name)
        return
    found.pairs.append((np.ascontiguousarray(image_plane), labels_plane.astype(np.int32)))
    found.names.append(name)


def _check_integer(labels: Any, name: str) -> None:
    dtype = np.dtype(labels.dtype)
    if not (np.issubdtype(dtype, np.integer) or dtype == bool):
        raise PluginError(f"{name}: labels must be integer object ids, got {dtype}")


def _check_found(found: TrainingPairs, where: str) -> None:
    if not found.pairs:
        raise PluginError(f"nothing to train on: {where} has no objects (paint at least one object, "
                          "one label id per object)")


def describe_pairs(found: TrainingPairs, limit: int = 4) -> str:
    """``"3 planes, 12 objects (cells[0], cells[2], cells[5]); 2 planes without labels skipped"``."""
    shown = ", ".join(found.names[:limit]) + (", ..." if len(found.names) > limit else "")
    text = f"{len(found)} plane{'s' * (len(found) != 1)}, {found.objects} objects ({shown})"
    if found.skipped:
        text += f"; {len(found.skipped)} without labels skipped"
    return text

