"""STOW-RS receive next to C-STORE: the same files into a fresh ``vera-gateway serve`` each, once by DCMTK
``storescu -xy`` (one association) and once by STOW-RS over one keep-alive HTTP connection (``--batch``
instances per multipart request). Both paths end in the same intake (spool fsync + ledger commit per
instance before the answer), so the ratio shows the cost of HTTP + multipart parsing.

    python bench/ingest_stow.py [--photos 20] [--small 200] [--repeats 2] [--batch 10]

``bench/ingest.py --stow`` runs the same comparison after its own table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import make_sets, send, stop, wait_echo  # noqa: E402
from gateway.core.destinations.dicomweb import MultipartBody  # noqa: E402
from tests.conftest import free_port  # noqa: E402


def wait_tcp(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {port}")


@contextmanager
def gateway_with_stow(root: Path) -> Iterator[tuple[int, int]]:
    """A gateway subprocess with a loopback STOW-RS receiver; yields (DICOM port, STOW port)."""
    root.mkdir(parents=True, exist_ok=True)
    dicom_port, stow_port = free_port(), free_port()
    config = {
        "data_dir": str(root),
        "port": dicom_port,
        "metrics_port": None,
        "quiet_period_s": 3600,
        "workers": 0,
        "stow": {"port": stow_port},
    }
    (root / "gateway.yaml").write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "gateway.cli", "--config", str(root / "gateway.yaml")]
    cmd += ["serve", "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env)
    try:
        wait_echo(dicom_port, "VERA_GW")
        wait_tcp(stow_port)
        yield dicom_port, stow_port
    finally:
        stop(proc)


def stow(port: int, files: list[Path], batch: int) -> float:
    """POST the files in multipart requests of ``batch`` instances; wall seconds. Every one must be stored."""
    started = time.perf_counter()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
        for start in range(0, len(files), batch):
            body = MultipartBody(files[start : start + batch])
            headers = {"Content-Type": body.content_type, "Content-Length": str(len(body))}
            response = client.post("/studies", content=iter(body), headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"STOW-RS answered HTTP {response.status_code}: {response.text[:300]}")
    return time.perf_counter() - started


def compare(sets: dict[str, list[Path]], work: Path, repeats: int, batch: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for set_name, files in sets.items():
        best = {"c-store": float("inf"), "stow-rs": float("inf")}
        for rep in range(repeats):
            with gateway_with_stow(work / f"cstore-{set_name}-{rep}") as (dicom_port, _):
                best["c-store"] = min(best["c-store"], send(dicom_port, "VERA_GW", files))
            with gateway_with_stow(work / f"stow-{set_name}-{rep}") as (_, stow_port):
                best["stow-rs"] = min(best["stow-rs"], stow(stow_port, files, batch))
        results[set_name] = {name: len(files) / seconds for name, seconds in best.items()}
    return results


def report(results: dict[str, dict[str, float]], repeats: int, batch: int) -> None:
    what = f"C-STORE (storescu -xy, 1 association) vs STOW-RS ({batch}/request), best of {repeats}"
    print(f"gateway receive: {what}")
    print("{:<12} {:>10} {:>10} {:>12}".format("set", "c-store/s", "stow-rs/s", "stow/c-store"))
    for set_name, r in results.items():
        ratio = r["stow-rs"] / r["c-store"]
        print(f"{set_name:<12} {r['c-store']:>10.1f} {r['stow-rs']:>10.1f} {ratio:>12.2f}")


def run(photos: int, small: int, repeats: int, batch: int) -> dict[str, dict[str, float]]:
    work = Path(tempfile.mkdtemp(prefix="bench-stow-"))
    try:
        results = compare(make_sets(work / "in", photos, small), work, repeats, batch)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, repeats, batch)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20, help="London Set photos (max 78)")
    parser.add_argument("--small", type=int, default=200, help="~50 kB Secondary Capture objects")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10, help="instances per STOW-RS request")
    args = parser.parse_args()
    run(args.photos, args.small, args.repeats, args.batch)


if __name__ == "__main__":
    main()
