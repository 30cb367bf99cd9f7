"""Hand freed heap memory back to the operating system (glibc only; a no-op elsewhere).

Encoding a frame allocates and frees a few hundred MiB of feature maps. glibc's ``malloc`` keeps
freed blocks for reuse; once it has freed a large mmapped block it raises its mmap threshold (up
to 32 MiB), so later feature maps come from the heap, which fragments, and the process's resident
memory creeps up frame after frame while a long stack is propagated. :func:`release_free_memory`
calls ``malloc_trim(0)``, which returns the free pages of every arena, so a propagation holds what
it uses (the model, the cached frames, the results) and not what it has freed. It changes no
allocator setting, so the rest of the process (napari, interactive clicks) is unaffected.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache
from typing import Callable


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap pages to the system; True if glibc's ``malloc_trim`` ran."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
