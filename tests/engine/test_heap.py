"""``release_free_memory``: memory freed inside the heap goes back to the system (glibc)."""

from __future__ import annotations

import ctypes
import os
import platform
import sys

import pytest

from napari_seem.engine.heap import release_free_memory

glibc_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's"
)


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@glibc_only
def test_freed_heap_blocks_leave_the_resident_memory():
    # 64 KiB blocks sit below glibc's mmap threshold: they come from the heap, and freeing every
    # other one leaves holes that free() alone does not return (the later blocks pin the heap top).
    blocks = [ctypes.create_string_buffer(b"x" * 65536) for _ in range(3000)]  # ~190 MiB, touched
    del blocks[::2]
    held = resident_bytes()
    assert release_free_memory()
    released = held - resident_bytes()
    assert released > 60 * 2**20, f"only {released / 2**20:.0f} MiB of ~94 MiB freed went back"
    assert len(blocks) == 1500 and blocks[0].raw[:1] == b"x"  # what is still in use is intact


def test_is_a_no_op_where_there_is_no_malloc_trim(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    from napari_seem.engine import heap

    heap._malloc_trim.cache_clear()
    try:
        assert release_free_memory() is False
    finally:
        monkeypatch.undo()
        heap._malloc_trim.cache_clear()
