"""Keep freed memory for reuse in processes that handle multi-megabyte arrays per request.

Reading 1,000 feature windows allocates a few megabytes (the ``MGET`` reply, the joined
buffer, the output array) and frees them again. glibc returns blocks that large to the OS
at once (``mmap``/``munmap``), so every read pays the page faults of fresh memory again:
measured here, that tripled a 1,000-symbol window read (``benchmarks/bench_online_store.py``
reports the read both ways). Raising glibc's mmap and trim thresholds keeps the memory in
the heap for the next request. The serving and engine processes call this at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["keep_freed_memory_for_reuse"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory_for_reuse(mmap_threshold: int = 256 << 20, trim_threshold: int = 512 << 20) -> bool:
    """Ask glibc to serve allocations below ``mmap_threshold`` from the heap and keep up to
    ``trim_threshold`` bytes of freed heap; return False where that is not possible
    (not Linux with glibc), True when applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    applied = libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return bool(applied and libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1)
