"""Which axes of an image layer are what: planes, channels, the stack axis, and how to name a plane.

An image layer's data axes are: *leading* axes (time, z, ...), optionally one *channel* axis among
them, then the two spatial axes (y, x), then for RGB images the colour axis. A *plane* is a tuple
with one index per leading data axis (the channel axis included, at the channel shown), which is
what ``layer_prompts`` uses to keep only the prompts drawn on that plane. The labels layer has the
image's axes without the channel and colour axes.

The stack's *role* (time, z or independent 2D planes) says how the leading axis is used, and how
the status line names a plane (:func:`describe_plane`). No Qt, no torch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


class PluginError(Exception):
    """Something the user can fix (no image, wrong dims, no prompts...): shown as a plain message.

    Deliberately not a ``RuntimeError``: the worker threads treat a ``RuntimeError`` as "the worker
    was deleted" and would swallow it."""


ROLES = ("time", "z", "independent")
ROLE_LABELS = {"time": "time (propagate through time)", "z": "z (propagate through z)",
               "independent": "independent 2D planes"}
DIRECTIONS = ("forward", "backward", "both")
PLANE_WORDS = {"time": "frame", "z": "slice"}  # what one plane along the stack axis is called


@dataclass(frozen=True)
class Geometry:
    """How an image layer's data axes are used (see the module docstring)."""

    shape: tuple[int, ...]
    rgb: bool = False
    channel_axis: int | None = None

    @property
    def ndim(self) -> int:
        """Number of layer dimensions (the RGB colour axis is not one)."""
        return len(self.shape) - int(self.rgb)

    @property
    def leading(self) -> tuple[int, ...]:
        """Data axes that index planes (time, z, ...), without the channel axis."""
        return tuple(a for a in range(self.ndim - 2) if a != self.channel_axis)

    @property
    def plane_shape(self) -> tuple[int, int]:
        return self.shape[self.ndim - 2], self.shape[self.ndim - 1]

    @property
    def labels_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in range(self.ndim) if a != self.channel_axis)

    @property
    def n_channels(self) -> int:
        if self.channel_axis is not None:
            return self.shape[self.channel_axis]
        return self.shape[-1] if self.rgb else 1

    def labels_axis(self, axis: int) -> int:
        """The labels-layer axis of image data axis ``axis`` (the channel axis is dropped)."""
        return axis - int(self.channel_axis is not None and self.channel_axis < axis)

    def labels_plane(self, plane: Sequence[int]) -> tuple[int, ...]:
        """The labels layer's leading indices of ``plane``."""
        return tuple(int(plane[a]) for a in self.leading)

    def image_index(self, plane: Sequence[int]) -> tuple:
        """Index into the image data reading ``plane``: all channels, the whole (y, x) plane."""
        lead = tuple(slice(None) if a == self.channel_axis else int(plane[a]) for a in range(self.ndim - 2))
        return lead + (slice(None), slice(None))

    @property
    def plane_channel_axis(self) -> int | None:
        """The channel axis of an array read with :meth:`image_index` (the others are gone)."""
        return None if self.channel_axis is None else 0

    def planes(self, at: Sequence[int]) -> list[tuple[int, ...]]:
        """Every plane of the stack (the channel index taken from ``at``)."""
        ranges = [range(self.shape[a]) if a != self.channel_axis else [int(at[a])] for a in range(self.ndim - 2)]
        return [tuple(p) for p in itertools.product(*ranges)]


def layer_geometry(layer: Any, channel_axis: int | None = None) -> Geometry:
    """The :class:`Geometry` of an image layer, or :class:`PluginError` for data SEEM cannot use."""
    if layer is None:
        raise PluginError("no image: add an image layer and choose it in the SEEM widget")
    if getattr(layer, "multiscale", False):
        raise PluginError(f"image {layer.name!r} is multiscale (a pyramid): not supported yet; add its "
                          "full-resolution level as an image layer")
    shape = tuple(int(s) for s in layer.data.shape)
    rgb = bool(getattr(layer, "rgb", False))
    geometry = Geometry(shape, rgb, channel_axis)
    if geometry.ndim < 2:
        raise PluginError(f"image {layer.name!r} has shape {shape}: SEEM needs at least two (y, x) dimensions")
    if channel_axis is not None and not 0 <= channel_axis < geometry.ndim - 2:
        raise PluginError(f"channel axis {channel_axis} is not one of the leading axes of image shape {shape}; "
                          "the last two axes are y and x")
    if min(geometry.plane_shape) < 2:
        raise PluginError(f"image {layer.name!r} has a {geometry.plane_shape} plane: too small to segment")
    return geometry


def current_plane(layer: Any, geometry: Geometry, world_point: Sequence[float]) -> tuple[int, ...]:
    """The plane of ``layer`` shown at the viewer's ``world_point`` (``viewer.dims.point``)."""
    data = np.asarray(layer.world_to_data(np.asarray(world_point, dtype=float)), dtype=float)
    index = np.round(data[: geometry.ndim - 2]).astype(int)
    sizes = np.asarray(geometry.shape[: geometry.ndim - 2], dtype=int)
    return tuple(int(v) for v in np.clip(index, 0, np.maximum(sizes - 1, 0)))


def parse_channels(text: str | None, geometry: Geometry) -> tuple[int, ...] | None:
    """Channel choice from text like ``"0"`` or ``"1, 2, 0"`` (blank: all channels, when at most three)."""
    if geometry.channel_axis is None:
        return None
    count = geometry.n_channels
    text = (text or "").strip()
    if not text:
        if count > 3:
            raise PluginError(f"the image has {count} channels: enter one channel or up to three "
                              "(mapped to red, green, blue), e.g. 0 or 0,2")
        return tuple(range(count))
    try:
        chosen = tuple(int(part) for part in text.replace(";", ",").split(",") if part.strip())
    except ValueError:
        raise PluginError(f"channels must be comma-separated channel numbers, got {text!r}") from None
    if not 1 <= len(chosen) <= 3 or any(not 0 <= c < count for c in chosen):
        raise PluginError(f"choose one to three channels among 0..{count - 1}, got {text!r}")
    return chosen


def propagation_axis(geometry: Geometry, role: str, axis: int | None) -> int:
    """The image data axis to propagate along, checked against the role and the image."""
    if role == "independent":
        raise PluginError("the stack is set to 'independent 2D planes': nothing propagates; choose "
                          "'time' or 'z' as the role of the stack axis")
    if not geometry.leading:
        raise PluginError("a 2D image has no axis to propagate along: propagation needs a time-lapse "
                          "or a z-stack (T, Y, X) / (Z, Y, X)")
    if axis is None:
        axis = geometry.leading[0]
    if axis not in geometry.leading:
        raise PluginError(f"axis {axis} cannot propagate: choose one of the stack axes {geometry.leading}")
    return axis


class AxisStack:
    """The frames along one data axis of an image, every other leading axis held at ``plane``;
    read lazily, one frame per ``stack[t]`` (what :class:`~napari_seem.engine.VideoSession` reads)."""

    def __init__(self, data: Any, geometry: Geometry, axis: int, plane: Sequence[int]) -> None:
        self.data, self.geometry, self.axis, self.plane = data, geometry, axis, tuple(plane)
        frame_shape = [geometry.shape[a] for a in range(len(geometry.shape))
                       if a == geometry.channel_axis or a >= geometry.ndim - 2]
        self.shape = (geometry.shape[axis], *frame_shape)
        self.channel_axis = None if geometry.channel_axis is None else 1

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        plane = list(self.plane)
        plane[self.axis] = int(t)
        return np.asarray(self.data[self.geometry.image_index(plane)])


def propagation_range(direction: str, source: int, n_frames: int,
                      frame_range: tuple[int, int] | None) -> tuple[int | tuple[int, int], int]:
    """The engine's ``stop`` for ``direction`` from ``source`` within ``frame_range`` (inclusive; default
    all frames), and how many frames that computes."""
    if direction not in DIRECTIONS:
        raise PluginError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    first, last = (0, n_frames - 1) if frame_range is None else (int(frame_range[0]), int(frame_range[1]))
    if not 0 <= first <= last < n_frames:
        raise PluginError(f"frame range {first}..{last} is not within the stack's frames 0..{n_frames - 1}")
    if not first <= source <= last:
        raise PluginError(f"the current frame {source} is outside the frame range {first}..{last}: move to a "
                          "frame inside it (the objects are carried from the current frame)")
    forward, backward = last - source, source - first
    steps = {"forward": forward, "backward": backward, "both": forward + backward}[direction]
    if steps == 0:
        raise PluginError(f"nothing to propagate {direction} from frame {source} within {first}..{last}")
    stop = {"forward": last, "backward": first, "both": (first, last)}[direction]
    return stop, steps




def describe_plane(geometry: Geometry, plane: Sequence[int], role: str, axis: int | None = None) -> str:
    """How the status line names ``plane``: ``"frame 3"`` (time), ``"slice 3"`` (z) or ``"plane 3 of
    12"`` (independent planes), and ``""`` for a 2D image. ``axis``: the stack axis (default the
    first); other stack axes follow in brackets, ``"slice 3 (axis 0 = 1)"``. Indices are from 0, as
    on napari's sliders."""
    leading = geometry.leading
    if not leading:
        return ""
    if role not in PLANE_WORDS:
        sizes = [geometry.shape[a] for a in leading]
        index = int(np.ravel_multi_index([int(plane[a]) for a in leading], sizes))
        return f"plane {index} of {int(np.prod(sizes))}"
    axis = axis if axis in leading else leading[0]
    others = ", ".join(f"axis {a} = {int(plane[a])}" for a in leading if a != axis)
    return f"{PLANE_WORDS[role]} {int(plane[axis])}" + (f" ({others})" if others else "")
