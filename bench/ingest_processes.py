"""Would several receiver processes help four associations? Four DCMTK ``storescu -xy`` associations into one
gateway process against two gateway processes with two associations each (what SO_REUSEPORT receivers would
give), in the same rounds (the order alternates), with the gateways' CPU ms per instance.

    .venv/bin/python bench/ingest_processes.py [--photos 40] [--small 300] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import Target, cpu_ms, gateway, make_sets  # noqa: E402
from tests.conftest import DCMTK_ENV  # noqa: E402

ASSOCIATIONS = 4


def send(targets: list[Target], files: list[Path]) -> float:
    """One storescu per target, files split round-robin; instances per second."""
    chunks = [files[i :: len(targets)] for i in range(len(targets))]
    started = time.perf_counter()
    base = ["/usr/bin/storescu", "-xy", "-aet", "BENCH", "-aec"]
    procs = [
        subprocess.Popen(
            [*base, aec, "127.0.0.1", str(port), *map(str, chunk)],
            env=DCMTK_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for chunk, (port, aec, _) in zip(chunks, targets, strict=True)
    ]
    if any(p.wait() != 0 for p in procs):
        raise RuntimeError("a storescu failed")
    return len(files) / (time.perf_counter() - started)


def one_round(work: Path, files: list[Path], processes: int) -> tuple[float, float]:
    with ExitStack() as stack:
        gateways = [stack.enter_context(gateway(work / f"gw-{processes}-{i}")) for i in range(processes)]
        before = sum(cpu_ms(pid) for _, _, pid in gateways)
        rate = send([gateways[i % processes] for i in range(ASSOCIATIONS)], files)
        cpu = (sum(cpu_ms(pid) for _, _, pid in gateways) - before) / len(files)
    shutil.rmtree(work, ignore_errors=True)
    os.sync()
    return rate, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    try:
        sets = make_sets(work / "in", args.photos, args.small)
        for rnd in range(args.rounds):
            for name, files in sets.items():
                for processes in (1, 2) if rnd % 2 == 0 else (2, 1):
                    run = one_round(work / f"r{rnd}-{name}", files, processes)
                    results.setdefault((name, processes), []).append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{ASSOCIATIONS} associations, median of {args.rounds} rounds; load average at the end {load}")
    for (name, processes), runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:<10} {processes} process(es): {rate:8.1f} instances/s, {cpu:.2f} CPU ms per instance")


if __name__ == "__main__":
    main()
