"""How long each receiver's own flushes take, receiver against receiver in the same minutes: ``strace -f -T``
on the receiving process while DCMTK ``storescu`` sends small objects over one association, receivers
alternating round by round (gateway, Orthanc, gateway, Orthanc, ...).

    .venv/bin/python bench/flush_latency.py [--small 200] [--rounds 2] [--receivers gateway orthanc]

Per receiver (all rounds together) it prints the fdatasync/fsync calls per instance and their duration:
median, 90th percentile, mean, the share above 1 ms, and the flush time per instance. On the shared VM the
durations are bimodal (a fast flush, or a wait of one or more ~4 ms slots while other tenants flush): a median
shows the fast mode only, a mean includes the waits, so compare receivers with the same statistic from the
same run. strace slows every traced system call, more for a receiver that makes many (Orthanc: ~50
``pwrite64`` per instance for its SQLite index, the gateway ~16): read the rates printed here as traced, not
as ingest speed (bench/ingest.py).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import RECEIVERS, make_sets, send  # noqa: E402

FLUSH = re.compile(r"^\d+\s+(?:fdatasync|fsync)\(.*<([\d.]+)>$")


def traced_send(name: str, files: list[Path], work: Path) -> tuple[float, list[float]]:
    """(instances/s, flush durations in ms) of one traced one-association send into a fresh receiver."""
    trace = work / f"{name}.strace"
    with RECEIVERS[name](work / name) as (port, aec, pid):
        send(port, aec, files[:3])  # warm-up: first association, directories, index pages
        command = ["strace", "-f", "-T", "-p", str(pid), "-o", str(trace), "-e", "trace=fdatasync,fsync"]
        tracer = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # strace attaches to every thread
        seconds = send(port, aec, files[3:])
        tracer.terminate()
        tracer.wait()
    lines = trace.read_text().splitlines()
    return (len(files) - 3) / seconds, [1000 * float(m.group(1)) for x in lines if (m := FLUSH.match(x))]


def summary(name: str, count: int, rates: list[float], flushes: list[float]) -> str:
    ordered = sorted(flushes) or [float("nan")]
    slow = sum(1 for f in flushes if f > 1.0) / max(1, len(flushes))
    return (
        f"{name:<10}{statistics.median(rates):>9.1f}{len(flushes) / count:>9.2f}"
        f"{statistics.median(ordered):>9.3f}{ordered[int(0.9 * (len(ordered) - 1))]:>9.3f}"
        f"{statistics.fmean(ordered):>9.3f}{100 * slow:>8.1f}%{sum(flushes) / count:>10.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200, help="~4 kB Secondary Capture objects per send")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--receivers", nargs="+", default=["gateway", "orthanc"], choices=list(RECEIVERS))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-flush-"))
    rates: dict[str, list[float]] = {n: [] for n in args.receivers}
    flushes: dict[str, list[float]] = {n: [] for n in args.receivers}
    try:
        files = make_sets(work / "in", 0, args.small + 3)["small-4kB"]
        for rnd in range(args.rounds):
            for name in args.receivers:
                rate, durations = traced_send(name, files, work / f"{rnd}")
                rates[name].append(rate)
                flushes[name].extend(durations)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"one association, {args.small} ~4 kB objects x {args.rounds} rounds, traced; load {load}")
    print("flush = fdatasync/fsync of the receiver; durations in ms; ms/inst = flush time per instance")
    head = ("receiver", "inst/s", "fl/inst", "median", "p90", "mean", ">1 ms", "ms/inst")
    print(f"{head[0]:<10}" + "".join(f"{h:>9}" for h in head[1:-1]) + f"{head[-1]:>10}")
    for name in args.receivers:
        print(summary(name, args.small * args.rounds, rates[name], flushes[name]))


if __name__ == "__main__":
    main()
