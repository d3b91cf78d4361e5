"""Cluster throughput on one machine, side by side in one run (real processes on loopback):

1. receive: DCMTK ``storescu`` into a single-machine gateway (SQLite ledger, local spool) vs a cluster
   receiver (PostgreSQL ledger, local spool) vs a cluster receiver with the S3 object store (moto);
2. pipeline: the same studies run by 1 worker, then by 2 workers (``vera-gateway worker``), measured from
   the first job started to the last job finished (worker start-up, mostly the torch import, excluded).

    .venv/bin/python bench/cluster.py [--studies 20] [--per-study 10] [--side 64]

Small uncompressed Secondary Captures with the blank pixel mode: this measures the distribution (queue,
ledger, store, fetch/upload), not the face engines. PostgreSQL runs with fsync=off here (tests/services.py),
so its receive rate is an upper bound for a server with fsync on. Prints instances/s and ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.cluster.nodes import Cluster, Node, wait_until  # noqa: E402
from tests.conftest import DCMTK_ENV, Orthanc, Study, free_port, make_small_sc, write_study  # noqa: E402
from tests.services import Postgres, S3Server  # noqa: E402


def make_files(root: Path, studies: int, per_study: int, side: int) -> list[Path]:
    files: list[Path] = []
    for s in range(studies):
        study = Study()
        datasets = [make_small_sc(study=study, number=n + 1, side=side, seed=s) for n in range(per_study)]
        files += write_study(root / f"s{s}", datasets)
    return files


def send(port: int, files: list[Path]) -> float:
    started = time.perf_counter()
    cmd = ["/usr/bin/storescu", "-xy", "-aec", "VERA_GW", "127.0.0.1", str(port), *map(str, files)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=DCMTK_ENV, timeout=600)
    assert done.returncode == 0, done.stderr[-1000:]
    return time.perf_counter() - started


def receive_sqlite(root: Path, files: list[Path]) -> float:
    port = free_port()
    args = ["serve", "--port", str(port), "--metrics-port", str(free_port()), "--quiet-period", "600"]
    node = Node(root, "sqlite", ["--data-dir", str(root / "sqlite"), *args], {}).start()
    try:
        wait_until(lambda: node.events("service.started") or not node.alive(), 120)
        return send(port, files)
    finally:
        node.kill9()


def receive_cluster(root: Path, url: str, files: list[Path], s3: tuple[str, str] | None) -> float:
    cluster = Cluster(root, url, ("PACS", free_port()), s3, quiet_period_s=600)
    try:
        node = cluster.receiver("recv")
        return send(cluster.ports[node.name], files)
    finally:
        cluster.stop()


def events(node: Node, name: str) -> list[float]:
    from datetime import datetime

    return [datetime.fromisoformat(e["timestamp"]).timestamp() for e in node.events(name)]


def pipeline(root: Path, url: str, pacs: Orthanc, files: list[Path], workers: int) -> float:
    """Instances per second from the first job started to the last finished, with ``workers`` workers."""
    cluster = Cluster(root, url, (pacs.aet, pacs.dicom_port), None, quiet_period_s=0.2)  # shared folder
    try:
        receiver = cluster.receiver("recv")
        send(cluster.ports[receiver.name], files)
        wait_until(
            lambda: cluster.sql("SELECT COUNT(*) AS n FROM jobs WHERE state='grouped'")[0]["n"] > 0, 60
        )
        nodes = [cluster.worker(f"worker-{i}") for i in range(workers)]
        done = {"deidentified", "forwarded"}
        wait_until(
            lambda: sum(n for s, n in cluster.instance_states().items() if s in done) == len(files), 600
        )
        assert set(cluster.instance_states()) <= done, cluster.instance_states()
        starts = [t for n in nodes for t in events(n, "job.processing")]
        ends = [t for n in nodes for t in events(n, "job.finished")]
        return len(files) / (max(ends) - min(starts))
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--per-study", type=int, default=10)
    parser.add_argument("--side", type=int, default=64, help="image side in pixels (side² · 3 bytes)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="vera-bench-cluster-"))
    files = make_files(root / "in", args.studies, args.per_study, args.side)
    postgres, s3 = Postgres(free_port()).init(), S3Server(free_port()).start()
    pacs = Orthanc(root / "orthanc").start()
    try:
        n = len(files)
        rates = {
            "receive sqlite": n / receive_sqlite(root / "r1", files),
            "receive postgresql": n / receive_cluster(root / "r2", postgres.create_database(), files, None),
            "receive postgresql+s3": n
            / receive_cluster(
                root / "r3",
                postgres.create_database(),
                files,
                (s3.endpoint, s3.create_bucket("bench-cluster")),
            ),
            "pipeline 1 worker": pipeline(root / "p1", postgres.create_database(), pacs, files, 1),
            "pipeline 2 workers": pipeline(root / "p2", postgres.create_database(), pacs, files, 2),
        }
    finally:
        pacs.stop(graceful=False)
        s3.stop()
        postgres.destroy()
    for name, rate in rates.items():
        print(f"{name:24s} {rate:8.1f} instances/s")
    print(f"receive postgresql / sqlite       {rates['receive postgresql'] / rates['receive sqlite']:.2f}")
    print(f"receive postgresql+s3 / sqlite    {rates['receive postgresql+s3'] / rates['receive sqlite']:.2f}")
    print(f"pipeline 2 workers / 1 worker     {rates['pipeline 2 workers'] / rates['pipeline 1 worker']:.2f}")
    print(json.dumps({"instances": len(files), "rates": rates}))


if __name__ == "__main__":
    main()
