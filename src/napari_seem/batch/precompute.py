"""Filling the feature cache ahead of time (e.g. on a GPU machine), so that annotating later (on a
laptop, in the plugin) only decodes.

Every plane of every image is prepared as the engine prepares it (channel choice, normalisation,
resize to ``target_size``) and encoded unless the cache already holds a valid entry for it. A 2D
image (gray, or RGB/RGBA) is one plane; a stack gives one plane per index of its stack axis
(``axis``, default the first) and of any other leading axis. The model, ``target_size`` and channel
choice must be the ones used when annotating, or the entries will not match.

:func:`precompute` is a plain function, used by ``napari-seem precompute`` (``cli/precompute.py``)
and by the batch runner's precompute tasks (``batch/tasks.py``). Importing this module does not
import torch: the command line checks its arguments first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")


def read_image(path: str | Path) -> np.ndarray:
    """The whole image file as an array (TIFF with tifffile, other formats with scikit-image)."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        return tifffile.imread(path)
    from skimage import io

    return io.imread(path)


def existing_files(paths: Sequence[str | Path]) -> list[Path]:
    """``paths`` as paths; ValueError naming those that are not files (checked before any work)."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"no such image file: {', '.join(missing)}")
    return paths


def iter_planes(
    image: np.ndarray, axis: int | None = None, channel_axis: int | None = None
) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(index, plane)`` for every plane of ``image``: ``plane`` is ``[H, W]`` or, with a channel
    axis, ``[H, W, C]``; ``index`` its position along the stack axes (``()`` for a 2D image).

    ``axis``: the stack axis (default: the first); the two last remaining axes are the plane's.
    ``channel_axis`` (of ``image``): kept in every plane. Without it, ``[H, W, 3|4]`` is one RGB plane."""
    image = np.asarray(image)
    if channel_axis is not None:
        image = np.moveaxis(image, _axis(channel_axis, image.ndim, "channel axis"), -1)
    elif image.ndim == 3 and image.shape[-1] in (3, 4) and axis is None:
        yield (), image  # an RGB(A) plane
        return
    plane_ndim = 3 if channel_axis is not None else 2
    if image.ndim < plane_ndim:
        raise ValueError(f"image of shape {image.shape} has no 2D plane")
    if image.ndim == plane_ndim:
        yield (), image
        return
    stack_axis = _axis(0 if axis is None else axis, image.ndim - (channel_axis is not None), "stack axis")
    image = np.moveaxis(image, stack_axis, 0)
    for index in np.ndindex(*image.shape[: image.ndim - plane_ndim]):
        yield index, image[index]


def _axis(axis: int, ndim: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what} {axis} is out of range for an image with {ndim} axes")
    return axis % ndim


def precompute(
    paths: Sequence[str | Path],
    cache,
    model,
    target_size: int | None = None,
    axis: int | None = None,
    channel_axis: int | None = None,
    channels: Sequence[int] | int | None = None,
    progress: bool = True,
) -> dict:
    """Encode every plane of ``paths`` into ``cache`` (a :class:`FeatureCache`) with ``model``, skipping
    planes it already holds. Returns counts: ``planes``, ``hits`` (valid entries found), ``misses``
    (planes encoded; an invalid entry found is counted in ``rejected`` too and replaced)."""
    from tqdm import tqdm

    from napari_seem.engine.image import DEFAULT_TARGET_SIZE, prepare_image

    size = DEFAULT_TARGET_SIZE if target_size is None else target_size
    paths = existing_files(paths)
    start = (cache.hits, cache.misses, cache.rejected)
    n_planes = 0
    with tqdm(total=0, desc="precompute", unit="plane", disable=not progress) as bar:
        for path in paths:  # one image in memory at a time
            planes = list(iter_planes(read_image(path), axis, channel_axis))
            bar.total += len(planes)
            for index, plane in planes:
                bar.set_postfix_str(f"{path.name}{list(index) if index else ''}", refresh=False)
                prepared = prepare_image(plane, -1 if channel_axis is not None else None, channels, size)
                cache.get_or_encode(model, prepared)
                bar.update()
            n_planes += len(planes)
    hits, misses, rejected = (now - before for now, before in zip((cache.hits, cache.misses, cache.rejected), start))
    return {"cache": str(cache.directory), "images": len(paths), "planes": n_planes, "hits": hits,
            "misses": misses, "rejected": rejected, "cache_size_mb": round(cache.size_bytes() / 1e6, 1)}
