"""Receiver processes against one process, paired: the same files over N associations into a gateway with
``receive_processes: 1`` and one with ``receive_processes: P``, in alternating rounds, with the CPU per
instance split into the main process and its receiver processes (/proc/<pid>/stat, 10 ms ticks: send enough
files for the split to mean something).

    .venv/bin/python bench/receive_processes.py [--processes 2] [--associations 4] [--small 800] [--photos 0]
        [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import CLOCK_TICKS, descendants, gateway, gateway_processes, make_sets, send  # noqa: E402


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def one_round(root: Path, files: list[Path], processes: int, associations: int) -> tuple[float, float, float]:
    """(instances/s, main process CPU ms per instance, receivers' CPU ms per instance)."""
    start = gateway(root) if processes == 1 else gateway_processes(processes)(root)
    with start as (port, aec, pid):
        warm, timed = files[-associations:], files[:-associations]
        send(port, aec, warm, associations)  # negotiation caches, lazy imports (files not sent again)
        pids = sorted(descendants(pid))
        before = {p: cpu_ticks(p) for p in pids}
        seconds = send(port, aec, timed, associations)
        after = {p: cpu_ticks(p) for p in pids}
    per = {p: (after[p] - before[p]) * 1000 / CLOCK_TICKS / len(timed) for p in pids}
    receivers = sum(v for p, v in per.items() if p != pid)
    shutil.rmtree(root, ignore_errors=True)
    os.sync()
    return len(timed) / seconds, per[pid], receivers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--small", type=int, default=800)
    parser.add_argument("--photos", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-receive-processes-"))
    runs: dict[int, list[tuple[float, float, float]]] = {1: [], args.processes: []}
    try:
        sets = make_sets(work / "in", args.photos, args.small)
        files = sets["photos"] + sets["small-4kB"]
        for rnd in range(args.rounds):
            for processes in (1, args.processes) if rnd % 2 == 0 else (args.processes, 1):
                result = one_round(work / f"p{processes}-{rnd}", files, processes, args.associations)
                runs[processes].append(result)
                rate, main_ms, receivers_ms = result
                load = os.getloadavg()[0]
                print(f"round {rnd} p{processes}: {rate:7.1f}/s, CPU ms per instance: main {main_ms:.3f}, "
                      f"receivers {receivers_ms:.3f}; load {load:.1f}", flush=True)  # fmt: skip
                time.sleep(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{len(files)} files over {args.associations} associations, median of {args.rounds} rounds:")
    for processes, results in runs.items():
        rate, main_ms, receivers_ms = (statistics.median(r[i] for r in results) for i in range(3))
        print(f"receive_processes {processes}: {rate:7.1f}/s, CPU ms per instance: main {main_ms:.3f}, "
              f"receivers {receivers_ms:.3f}, together {main_ms + receivers_ms:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
