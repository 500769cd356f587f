"""Keep freed memory in the process instead of handing it back to the OS after every frame.

A frame allocates the same buffers every time: the network's feature maps (0.3-1.8 MB each), NumPy arrays of the
head and hand stages. glibc's malloc gives blocks above its mmap threshold their own mapping and returns free memory
at the top of a heap to the OS (trim); the next frame then touches fresh pages, each a page fault that zeroes 4 KB.
Its thresholds adapt on their own, so a process lands in either state by chance: the dense network on 2 threads
took 834-904 page faults and 5.7-9.2 ms per forward in some runs, none and 3.4-4.7 ms in others (same machine,
same minute). With both thresholds fixed every run has none, and the tracker's frame on ``seated`` went from
23.0-23.5 to 20.8-21.4 ms (p50, network keypoints, 2 cores). PyTorch's CPU tuning guide gives the same advice
in the form of a different allocator (jemalloc, tcmalloc); this needs nothing installed.

The cost: the process keeps its peak heap (tens of MB for the tracker) instead of shrinking between frames.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD_BYTES = 1 << 30
"""Free memory at the top of the heap that stays mapped (more than any frame frees)."""
MMAP_THRESHOLD_BYTES = 32 << 20
"""Blocks up to this size come from the heap, not from a mapping of their own (glibc's largest allowed value)."""

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Fix glibc malloc's trim and mmap thresholds for this process (once; later calls return the first answer).

    Returns whether it applied: False where the C library is not glibc (musl, macOS), which is left as it is."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):  # no C library by that name (Windows), or one without mallopt
        log.debug("no mallopt in this C library: malloc left as it is")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and bool(
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    )
    if not _applied:
        log.debug("mallopt refused the thresholds: malloc left as it is")
    return _applied
