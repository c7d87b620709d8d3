"""memory.heap: freed memory handed out again holds no old contents (what chroma's index files are made of)."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import pytest

from memory.heap import PERTURB_BYTE, wipe_recycled_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def test_a_freed_block_handed_out_again_holds_none_of_its_old_text():
    if not wipe_recycled_memory():
        pytest.skip("not glibc")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 * 1024 - 64  # above the per-thread cache, below the mmap threshold: the ordinary heap
    marker = "她说过的话 what she said".encode() * (size // 40)
    for _ in range(20):  # the same size comes back from the same free lists
        p = libc.malloc(size)
        ctypes.memmove(p, marker, len(marker))
        libc.free(p)
        q = libc.malloc(size)
        seen = ctypes.string_at(q, size)
        libc.free(q)
        assert "她说过的话".encode() not in seen and b"what she said" not in seen
        assert seen[100:200] == bytes([PERTURB_BYTE ^ 0xFF]) * 100  # what glibc fills new blocks with
    assert wipe_recycled_memory()  # idempotent
