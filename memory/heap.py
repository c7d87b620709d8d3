"""Keep recycled process memory out of the vector index's files.

chromadb's HNSW segment (its hnswlib fork) allocates its buffers with ``malloc`` at full capacity and writes
them to disk whole, so the slots past the last vector hold whatever the process had freed there before:
message text included (chroma issue 7688, open upstream). Forgotten words could then outlive ``/forget-me`` in
``chroma/*/data_level0.bin`` or ``length.bin``, where no erasure can reach them.

On glibc, ``mallopt(M_PERTURB)`` makes every block ``malloc`` hands out, and every block freed, hold a fixed
byte instead of old contents. Blocks served from glibc's per-thread cache (up to about 1 KB) skip that; the
environment variable ``GLIBC_TUNABLES=glibc.malloc.tcache_count=0``, set before the process starts (``make
run`` and ``make test`` do), turns the cache off so no block is skipped. Elsewhere (musl, macOS, Windows)
this does nothing, and SECURITY.md says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("paibot.memory")

M_PERTURB = -6  # glibc's <malloc.h>
PERTURB_BYTE = 0xA5
TCACHE_OFF = "glibc.malloc.tcache_count=0"
_done: bool | None = None


def wipe_recycled_memory() -> bool:
    """Ask the C allocator to overwrite blocks it hands out and takes back; returns whether it could.
    Idempotent; call it before the vector index is opened."""
    global _done
    if _done is None:
        _done = _perturb()
        if _done and TCACHE_OFF not in os.environ.get("GLIBC_TUNABLES", ""):
            log.debug("small heap blocks are still recycled unwiped: start with GLIBC_TUNABLES=%s", TCACHE_OFF)
    return _done


def _perturb() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_PERTURB, PERTURB_BYTE))
