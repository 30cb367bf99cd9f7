"""Atomic output: a label file is either absent, the old one, or complete; never half-written.

A TIFF is written to a hidden temporary file in the target folder and renamed over the target
(``os.replace``, atomic on one filesystem). A zarr array (a folder) is written to a hidden temporary
folder, then renamed into place. A failed write removes its temporary; a process killed while
writing can leave a hidden ``.<name>.partial-*`` entry, which :func:`remove_leftovers` clears.

Stacks split over several tasks write one ``.npy`` part per chunk of planes into a hidden
``.<name>.parts`` folder (each part atomically); :func:`assemble_parts` then writes the target.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

FORMATS = {"tif": ".tif", "zarr": ".zarr"}


def labels_dtype(labels: np.ndarray) -> np.dtype:
    """The smallest unsigned type of uint16/uint32 that holds every id of ``labels``."""
    top = int(labels.max()) if labels.size else 0
    if top < 0:
        raise ValueError("label ids must be >= 0")
    return np.dtype(np.uint16) if top <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:12]}")


def write_labels(target: str | Path, labels: np.ndarray, fmt: str, attrs: dict[str, Any] | None = None) -> Path:
    """Write integer ``labels`` (``[H, W]`` or ``[N, H, W]``) to ``target`` atomically, as ``fmt``
    (``"tif"``: zlib-compressed TIFF; ``"zarr"``: a zarr v3 array, one chunk per plane, ``attrs``
    stored as its attributes)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    target = Path(target)
    labels = np.ascontiguousarray(labels, dtype=labels_dtype(labels))
    temporary = _temporary(target)
    try:
        if fmt == "tif":
            _write_tiff(temporary, labels)
            os.replace(temporary, target)
        else:
            _write_zarr(temporary, labels, attrs or {})
            _replace_folder(temporary, target)
    except BaseException:
        _remove(temporary)
        raise
    return target


def _write_tiff(path: Path, labels: np.ndarray) -> None:
    import tifffile

    tifffile.imwrite(path, labels, compression="zlib", photometric="minisblack")


def _write_zarr(path: Path, labels: np.ndarray, attrs: dict[str, Any]) -> None:
    import zarr

    chunks = labels.shape if labels.ndim == 2 else (1, *labels.shape[1:])
    array = zarr.create_array(store=str(path), shape=labels.shape, dtype=labels.dtype, chunks=chunks)
    array[...] = labels
    array.attrs.update(attrs)


def _replace_folder(new: Path, target: Path) -> None:
    """Rename folder ``new`` to ``target``; an existing target is moved aside first and then
    deleted, so ``target`` is at every moment the old or the new complete array."""
    if not target.exists():
        os.rename(new, target)
        return
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
    os.rename(target, old)
    os.rename(new, target)
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def parts_folder(target: str | Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.parts")


def write_part(target: str | Path, start: int, labels: np.ndarray) -> Path:
    """Planes ``start..start + len(labels)`` of ``target``'s stack, ``labels [n, H, W]``, as one part."""
    folder = parts_folder(target)
    folder.mkdir(exist_ok=True)
    part = folder / f"{start:09d}.npy"
    temporary = folder / f".{part.name}.partial-{uuid.uuid4().hex[:12]}"
    try:
        with open(temporary, "wb") as handle:
            np.save(handle, labels)
        os.replace(temporary, part)
    except BaseException:
        _remove(temporary)
        raise
    return part


def assemble_parts(target: str | Path, starts: list[int], fmt: str, attrs: dict[str, Any] | None = None) -> Path:
    """Concatenate the parts beginning at ``starts`` (in that order) into ``target``, then delete them."""
    folder = parts_folder(target)
    missing = [s for s in starts if not (folder / f"{s:09d}.npy").is_file()]
    if missing:
        raise FileNotFoundError(f"parts starting at planes {missing} of {target} are missing in {folder}")
    labels = np.concatenate([np.load(folder / f"{s:09d}.npy") for s in starts])
    write_labels(target, labels, fmt, attrs)
    _remove(folder)
    return Path(target)


def remove_leftovers(target: str | Path) -> list[Path]:
    """Delete what a failed or killed task may have left for ``target`` (temporaries and parts; never
    the target itself). Returns what was removed."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    # A ``.old-`` folder (a kill between the two renames of a zarr replacement) holds the previous
    # complete output: it is left for the user, not deleted.
    stale = [p for p in target.parent.iterdir()
             if p.name.startswith(f".{target.name}.partial-") or p == parts_folder(target)]
    for path in stale:
        _remove(path)
    return stale
