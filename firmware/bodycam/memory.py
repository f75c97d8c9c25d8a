"""Keep the camera's memory in one place: cap glibc's malloc arenas before any worker thread starts.

glibc gives threads that allocate at once their own arenas (up to 8 per core). The capture, encode,
sound and writer threads each churn multi-megabyte frame buffers, and memory freed in one arena is
not reused by another: at 1080p with a full 30 s pre-event buffer that stranded ~50 MB of resident
memory (`scripts/bench record`: 245 MB with the default, 195 MB with two arenas). An operator's
``MALLOC_ARENA_MAX`` in the environment wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt() parameter number (malloc.h)
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """True if glibc took the cap; False elsewhere (musl, macOS) or when the environment sets its own."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
