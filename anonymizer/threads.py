"""Thread counts of the native kernels (OpenCV, the BLAS under numpy) while one pairing group is anonymized.

The gateway runs one worker process per core, so a pixel job that also spreads each OpenCV call and each
matrix product over every core makes the threads of both workers wait on each other. On the shared 2-core
machine, OpenCV and BLAS on one thread each took a 12 MP photo's process CPU down by about a tenth
(``bench/pixel_timing.py``), with outputs byte-identical on every photo and seed compared
(docs/face-engine.md, issue-11y; ``tests/faces/test_kernel_threads.py``). The limit is scoped, like
``faces.models.one_torch_thread``: what a caller set before is restored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_lock = threading.Lock()
_inside = 0  # blocks open now, on any thread: the first sets the counts, the last restores them
_saved: tuple[int, Any] | None = None
_limit = 0  # the count the first open block set


def _controller() -> Any:
    """The BLAS libraries loaded now (numpy's, OpenCV's, and any loaded later, e.g. by dlib): looked up at
    each outermost block (~1.5 ms), so a library loaded lazily after the first group is limited too."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def kernel_threads(count: int) -> Iterator[None]:
    """OpenCV and BLAS on at most ``count`` threads inside the block (0: leave them as they are). The counts
    are process-wide: blocks open at once on several threads share the first one's limit, and the counts
    come back when the last one closes (no lock is held while the block runs)."""
    global _inside, _saved, _limit
    if count <= 0:
        yield
        return
    import cv2

    with _lock:
        if _inside == 0:
            _saved = (cv2.getNumThreads(), _controller().limit(limits=count, user_api="blas"))
            cv2.setNumThreads(count)
            _limit = count
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _saved is not None:
                cv_before, blas = _saved
                cv2.setNumThreads(cv_before)
                blas.restore_original_limits()
                _saved, _limit = None, 0


def group_limit() -> int:
    """The count the open blocks set (0: none open, or one that leaves the libraries as they are): torch's
    small networks inside a group run on it too (faces.descriptor_torch)."""
    with _lock:
        return _limit


def current_threads() -> tuple[int, int]:
    """(OpenCV's thread count, the largest BLAS thread count): for tests and the timing bench."""
    import cv2

    blas = [lib["num_threads"] for lib in _controller().info() if lib["user_api"] == "blas"]
    return cv2.getNumThreads(), max(blas, default=0)
