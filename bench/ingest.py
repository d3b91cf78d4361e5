"""Ingest throughput: the same files sent by DCMTK ``storescu -xy`` (one association, TCP_NODELAY=1) into
the gateway (``vera-gateway serve``: parse, spool with fsync, ledger commit before Success), into DCMTK
``storescp`` (bit-preserving writes, no fsync) and into Orthanc (SQLite index), side by side in one run.

    .venv/bin/python bench/ingest.py [--photos 20] [--small 200] [--repeats 2] [--parallel 1]

Prints instances/s and MB/s per receiver and the ratios gateway/storescp and gateway/Orthanc. Sets:
London Set photos wrapped as JPEG Baseline VL Photographic (no re-encoding), and ~50 kB uncompressed RGB
Secondary Capture objects. Each run gets a fresh receiver (no duplicate short-cuts).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import (  # noqa: E402
    DCMTK_ENV,
    Orthanc,
    Study,
    face_photos,
    free_port,
    make_small_sc,
    make_vl_photo,
    write_study,
)

Receiver = Callable[[Path], "contextmanager[tuple[int, str]]"]


def wait_echo(port: int, aec: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cmd = ["/usr/bin/echoscu", "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port)]
        if subprocess.run(cmd, capture_output=True, env=DCMTK_ENV).returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no C-ECHO answer from {aec} on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def gateway(root: Path) -> Iterator[tuple[int, str]]:
    port = free_port()
    cmd = [
        str(REPO / ".venv/bin/vera-gateway"),
        "serve",
        "--data-dir",
        str(root),
        "--port",
        str(port),
        "--metrics-port",
        "0",
        "--quiet-period",
        "3600",
        "--workers",
        "0",
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_echo(port, "VERA_GW")
        yield port, "VERA_GW"
    finally:
        stop(proc)


@contextmanager
def storescp(root: Path) -> Iterator[tuple[int, str]]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = ["/usr/bin/storescp", "+xa", "+B", "-aet", "STORESCP", "-od", str(root), str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=DCMTK_ENV)
    try:
        wait_echo(port, "STORESCP")
        yield port, "STORESCP"
    finally:
        stop(proc)


@contextmanager
def orthanc(root: Path) -> Iterator[tuple[int, str]]:
    server = Orthanc(root, aet="ORTHANC").start()
    try:
        yield server.dicom_port, "ORTHANC"
    finally:
        server.stop(graceful=False)


def send(port: int, aec: str, files: list[Path], parallel: int = 1) -> float:
    """Send ``files`` over ``parallel`` simultaneous associations (files split round-robin); wall seconds."""
    chunks = [files[i::parallel] for i in range(parallel)]
    base = ["/usr/bin/storescu", "-xy", "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port)]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*base, *map(str, chunk)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=DCMTK_ENV
        )
        for chunk in chunks
    ]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - started
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError(f"storescu to {aec} failed: {b''.join(errors)[-500:]!r}")
    return elapsed


def make_sets(root: Path, photos: int, small: int) -> dict[str, list[Path]]:
    study = Study()
    photo_ds = [make_vl_photo(p, study=study, number=n) for n, p in enumerate(face_photos(photos))]
    small_ds = [make_small_sc(study=study, number=n) for n in range(small)]
    return {
        "photos": write_study(root / "photos", photo_ds),
        "small-50kB": write_study(root / "small", small_ds),
    }


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    receivers: dict[str, Callable[[Path], Iterator[tuple[int, str]]]] = {
        "gateway": gateway,
        "storescp": storescp,
        "orthanc": orthanc,  # type: ignore[dict-item]
    }
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    results: dict[str, dict[str, float]] = {}
    try:
        sets = make_sets(work / "in", args.photos, args.small)
        for set_name, files in sets.items():
            megabytes = sum(f.stat().st_size for f in files) / 1e6
            for name, receiver in receivers.items():
                best = float("inf")
                for rep in range(args.repeats):
                    with receiver(work / f"{name}-{set_name}-{rep}") as (port, aec):  # type: ignore[attr-defined]
                        best = min(best, send(port, aec, files, args.parallel))
                results.setdefault(set_name, {})[name] = len(files) / best
                results[set_name][name + "_MBps"] = megabytes / best
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    cpus = os.cpu_count()
    assocs = f"{args.parallel} association(s)"
    print(f"ingest bench: storescu -xy, {assocs}, TCP_NODELAY=1, best of {args.repeats}; {cpus} CPUs")
    head = ("set", "gateway/s", "storescp/s", "orthanc/s", "gw/storescp", "gw/orthanc")
    print("{:<12} {:>10} {:>11} {:>10} {:>12} {:>11}".format(*head))
    for set_name, r in results.items():
        gw, scp, orth = r["gateway"], r["storescp"], r["orthanc"]
        print(f"{set_name:<12} {gw:>10.1f} {scp:>11.1f} {orth:>10.1f} {gw / scp:>12.2f} {gw / orth:>11.2f}")
        mb = (r["gateway_MBps"], r["storescp_MBps"], r["orthanc_MBps"])
        print("{:<12} {:>10.1f} {:>11.1f} {:>10.1f}".format("  MB/s", *mb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20, help="London Set photos (max 78)")
    parser.add_argument("--small", type=int, default=200, help="~50 kB Secondary Capture objects")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=1, help="simultaneous associations per receiver")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--stow", action="store_true", help="then STOW-RS vs C-STORE (bench/ingest_stow.py)")
    args = parser.parse_args()
    results = run(args)
    report(results, args)
    if args.stow:
        from bench.ingest_stow import run as run_stow

        run_stow(args.photos, args.small, args.repeats, batch=10)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
