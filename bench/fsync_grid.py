"""How this disk's fdatasync of a new small file behaves when the caller does some work between two of them,
as a receiver with one association does (receive, parse, commit, answer; then the next instance's fsync).

    .venv/bin/python bench/fsync_grid.py [--dir /tmp] [--count 60]

On the shared development VM the flushes complete on a ~4 ms grid: with up to ~1 ms of work between them one
instance takes one period (~250/s), with 2-3 ms it takes two (~125/s), with 5 ms four. So the instances/s of
one association are quantised by the receiver's own per-instance time, and a receiver (Orthanc or ours) whose
work between two fsyncs is just above a step halves its rate: read the ingest bench with this in mind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

GAPS_MS = (0.0, 0.5, 1.0, 2.0, 3.0, 5.0)


def fsync_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fdatasync(fd)
    finally:
        os.close(fd)


def busy(ms: float) -> None:
    """Work on the CPU (not a sleep): the time a receiver spends between two fsyncs."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


def measure(root: Path, gap_ms: float, count: int) -> tuple[float, float]:
    """Median fdatasync ms and median period ms (gap + write + fdatasync)."""
    data, flushes, periods = os.urandom(4096), [], []
    for i in range(count):
        started = time.perf_counter()
        busy(gap_ms)
        flush = time.perf_counter()
        fsync_new_file(root / f"{gap_ms}-{i}.bin", data)
        done = time.perf_counter()
        flushes.append(done - flush)
        periods.append(done - started)
    return 1000 * statistics.median(flushes), 1000 * statistics.median(periods)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="a directory on the disk to test")
    parser.add_argument("--count", type=int, default=60)
    args = parser.parse_args()
    print(f"{'work ms':>8}{'fdatasync ms':>14}{'period ms':>11}{'per s':>8}")
    with tempfile.TemporaryDirectory(prefix="fsync-grid-", dir=args.dir) as tmp:
        for gap in GAPS_MS:
            flush, period = measure(Path(tmp), gap, args.count)
            print(f"{gap:>8.1f}{flush:>14.2f}{period:>11.2f}{1000 / period:>8.0f}")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
