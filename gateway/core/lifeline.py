"""Worker processes end when the gateway's main process ends, however it ends (kill -9 included).

A pool worker's parent is multiprocessing's forkserver, not the main process, and a worker blocked on its call
queue never notices the main process is gone (the forkserver itself exits when the main process's end of its
"alive" pipe closes). So each worker watches the main process itself: a pidfd (Linux >= 5.3) becomes readable
when that process exits, whatever the signal; where pidfds are missing it polls. The parent-death signal
(``prctl(PR_SET_PDEATHSIG)``) covers the worker's direct parent as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import threading

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` when this process's parent exits; False where prctl is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def exit_with(pid: int, poll_s: float = 0.5) -> threading.Thread | None:
    """Start a daemon thread that ends this process (``os._exit``) as soon as process ``pid`` has exited.
    Returns None when ``pid`` is already gone (the caller is then ended at once)."""
    try:
        fd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])
        else:
            while _running(pid):
                threading.Event().wait(poll_s)
        os._exit(1)  # the gateway is gone: nobody will collect this worker's results

    thread = threading.Thread(target=watch, name=f"lifeline-{pid}", daemon=True)
    thread.start()
    return thread


def _running(pid: int) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        return True
    return False
