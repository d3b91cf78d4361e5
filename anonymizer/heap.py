"""glibc's heap kept for a pixel worker's large arrays, instead of mapped and unmapped for each of them.

A 12 MP photo's pixel stage allocates and frees dozens of arrays of 3-150 MB (frames, copies, float ROIs, the
text detector's 3 MP levels). glibc serves each block above its mmap threshold (at most 32 MB, by its own
dynamic rule) with a fresh mapping and unmaps it on free, and returns free heap above its trim threshold to
the kernel: the next array of that size then faults in every page again, zeroed by the kernel. On the timing
photo that was 4,400-56,000 minor faults and 0.03-0.45 s of system CPU per photo, counted in the
process's CPU time (docs/face-engine.md, issue-11t10). With both thresholds raised the freed blocks stay in
the heap and are reused: ~30 faults, under 0.015 s of system CPU, every output byte the same (the values an
array holds do not depend on where its memory came from), peak RSS +50 MB (1.25 → 1.30 GB). The worker then
keeps up to the threshold of free heap between jobs instead of handing it back (RSS 1.06-1.11 → 1.30 GB).

``mallopt`` is process-wide and set once, from the pixel stage's entry (never at import). Where the C
library is not glibc (no ``mallopt``) nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
import threading

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_applied: int | None = None  # the threshold set in this process (None: glibc's defaults, never changed)


def keep_freed(threshold: int) -> bool:
    """Blocks below ``threshold`` bytes come from the heap, and up to ``threshold`` bytes of free heap are
    kept for the next ones (0: leave the C library's defaults). True when the thresholds are in force."""
    global _applied
    if threshold <= 0:
        return False
    with _lock:
        if _applied == threshold:
            return True
        mallopt = _mallopt()
        if mallopt is None:
            return False
        ok = bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
        if not ok:
            log.warning("heap thresholds not set", extra={"threshold": threshold})
            return False
        _applied = threshold
        return True


def applied() -> int | None:
    """The threshold :func:`keep_freed` set in this process, None when it set none."""
    return _applied


def _mallopt() -> ctypes._CFuncPtr | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt
