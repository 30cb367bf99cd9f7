"""TIFF stacks in, labels out (napari reader/writer contributions; usable without napari)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

TIFF_SUFFIXES = (".tif", ".tiff")
LabelsLayerData = tuple[np.ndarray, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LabelsLayerData]] | None:
    """napari reader hook: a reader for one TIFF path, else None (napari then asks other readers)."""
    if isinstance(path, list) or not str(path).lower().endswith(TIFF_SUFFIXES):
        return None
    return read_tiff


def read_tiff(path: str | list[str]) -> list[LabelsLayerData]:
    """Read a TIFF (2D, stack, or multichannel) as one image layer; ImageJ axes, if any, name the layer.

    Files whose name contains ``label`` and hold integers load as a labels layer.
    """
    import tifffile

    path = path[0] if isinstance(path, list) else path
    with tifffile.TiffFile(path) as tif:
        data = tif.asarray()
        axes = tif.series[0].axes if tif.series else ""
    name = Path(path).stem
    meta: dict[str, Any] = {"name": name, "metadata": {"axes": axes, "source": str(path)}}
    is_labels = "label" in name.lower() and np.issubdtype(data.dtype, np.integer)
    return [(data, meta, "labels" if is_labels else "image")]


def write_labels(path: str, data: np.ndarray, meta: dict[str, Any]) -> list[str]:
    """napari writer hook for a labels layer: an integer TIFF, written atomically (temp file + rename).

    A layer napari-seem wrote to also gets its provenance beside the TIFF (``<stem>.provenance.json``,
    and ``<stem>.provenance.npz`` for reference images): see :mod:`napari_seem.provenance`."""
    import tifffile

    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {data.dtype}")
    target = Path(path)
    if target.suffix.lower() not in TIFF_SUFFIXES:
        target = target.with_suffix(".tif")
    tmp = target.with_name(f".{target.name}.partial")
    tifffile.imwrite(tmp, data, compression="zlib", photometric="minisblack")
    os.replace(tmp, target)
    from napari_seem.provenance import save_beside

    return [str(target), *save_beside(target, data, (meta or {}).get("metadata") or {})]
