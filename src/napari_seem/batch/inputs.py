"""Batch inputs: which files, how their arrays are read, and what their planes are.

An input is a TIFF or PNG file, or a folder whose TIFF and PNG files (not recursive, sorted by name)
are inputs. An image holds independent 2D planes:

* ``(H, W)`` gray or ``(H, W, 3|4)`` RGB(A): one plane;
* ``(N, H, W)`` or ``(N, H, W, 3|4)``: a stack of N planes (for ``propagate``, the frames).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")
RGB_CHANNELS = (3, 4)


class BatchInputError(ValueError):
    """An input that cannot be processed (missing, unreadable, unsupported shape)."""


def find_inputs(paths: Sequence[str | Path]) -> list[Path]:
    """Input files, in the order given (a folder's files sorted by name); duplicates dropped."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and _is_image(p) and not p.name.startswith("."))
            if not found:
                raise BatchInputError(f"folder {path} has no {'/'.join(IMAGE_SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            if not _is_image(path):
                raise BatchInputError(f"{path} is not a TIFF or PNG file ({', '.join(IMAGE_SUFFIXES)})")
            files.append(path)
        else:
            raise BatchInputError(f"input not found: {path}")
    # Absolute (workers may run elsewhere) but not resolved: a symlink keeps its own name.
    unique = list(dict.fromkeys(Path(os.path.abspath(p)) for p in files))
    if not unique:
        raise BatchInputError("no input files given")
    return unique


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def output_names(inputs: Sequence[Path], suffix: str) -> list[str]:
    """``<stem>_labels<suffix>`` per input; two inputs that would share an output are an error."""
    names = [f"{p.stem}_labels{suffix}" for p in inputs]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        sources = [str(p) for p, n in zip(inputs, names) if n in clashes]
        raise BatchInputError(f"inputs {sources} would all write {clashes}: rename them or run them separately")
    return names


def read_array(path: str | Path) -> np.ndarray:
    """The full array of a TIFF or PNG file; an unreadable file raises :class:`BatchInputError`."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = tifffile.imread(path)
        else:
            from skimage import io

            array = np.asarray(io.imread(path))
    except (OSError, ValueError, SyntaxError) as err:  # PIL reports some broken PNGs as SyntaxError
        raise BatchInputError(f"cannot read {path}: {type(err).__name__}: {err}") from None
    if array.size == 0:  # tifffile returns an empty array for a file whose pages cannot be found
        raise BatchInputError(f"cannot read {path}: no image data in it (a truncated or corrupt file?)")
    return array


def as_planes(array: np.ndarray, path: str | Path = "image") -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, C)`` view of an image's independent planes (see the module docstring)."""
    shape = array.shape
    if array.ndim == 2 or (array.ndim == 3 and shape[-1] in RGB_CHANNELS):
        return array[None]
    if array.ndim == 3 or (array.ndim == 4 and shape[-1] in RGB_CHANNELS):
        return array
    raise BatchInputError(f"{path}: shape {shape} is not a gray or RGB plane, nor a stack of them "
                          "((H, W), (H, W, 3), (N, H, W) or (N, H, W, 3))")


def read_planes(path: str | Path, start: int | None = None, stop: int | None = None) -> tuple[np.ndarray, int, bool]:
    """Planes ``start..stop - 1`` (default: all) of an input as ``(n, H, W[, C])``, the input's plane
    count, and whether it is a single plane rather than a stack. A TIFF stored one page per plane
    is read only where asked; other files are read whole."""
    path = Path(path)
    if start is not None and path.suffix.lower() in (".tif", ".tiff"):
        chunk = _read_tiff_pages(path, start, stop)
        if chunk is not None:
            return chunk
    array = read_array(path)
    planes = as_planes(array, path)
    total = planes.shape[0]
    start, stop = (0 if start is None else start), (total if stop is None else stop)
    if not 0 <= start < stop <= total:
        raise BatchInputError(f"{path} has {total} plane(s); planes {start}..{stop - 1} were asked for")
    return planes[start:stop], total, planes.ndim == array.ndim + 1


def _read_tiff_pages(path: Path, start: int, stop: int | None) -> tuple[np.ndarray, int, bool] | None:
    """:func:`read_planes` for a stack TIFF with one page per plane; None for any other layout."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = series.shape
            rgb = shape[-1] in RGB_CHANNELS
            is_stack = (len(shape) == 4 and rgb) or (len(shape) == 3 and not rgb)
            if not is_stack or len(series.pages) != shape[0]:
                return None
            stop = shape[0] if stop is None else stop
            if not 0 <= start < stop <= shape[0]:
                raise BatchInputError(f"{path} has {shape[0]} planes; planes {start}..{stop - 1} were asked for")
            planes = series.asarray(key=range(start, stop)) if stop - start > 1 else series.asarray(key=start)[None]
            return planes.reshape((stop - start, *shape[1:])), int(shape[0]), False
    except BatchInputError:
        raise
    except (OSError, ValueError, IndexError) as err:
        raise BatchInputError(f"cannot read {path}: {type(err).__name__}: {err}") from None


def count_planes(path: str | Path) -> int | None:
    """Planes of an input from its header only (TIFF), 1 for PNG; None if the header cannot be read
    (the task that reads the file then reports why)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return 1
    try:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            shape = tif.series[0].shape
    except (OSError, ValueError, IndexError):
        return None
    if len(shape) == 2 or (len(shape) == 3 and shape[-1] in RGB_CHANNELS):
        return 1
    return int(shape[0]) if len(shape) in (3, 4) else None
