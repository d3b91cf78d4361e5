"""The gateway as a cluster on loopback: 2 receivers + 2 workers + 1 forwarder sharing a PostgreSQL ledger and
an S3 bucket (moto), a real Orthanc as the research PACS, DCMTK storescu as the modality. Small uncompressed
Secondary Captures and the blank pixel mode keep the run short: what is tested is the distribution, not faces.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.nodes import Cluster, wait_until
from tests.conftest import DCMTK_ENV, Study, make_small_sc, write_study
from tests.services import Postgres, S3Server

pytestmark = [pytest.mark.integration, pytest.mark.slow]
STUDIES, PER_STUDY = 20, 10
done_by_attempt_2 = {"state": "deidentified", "attempts": 2}


def storescu(port: int, files: list[Path], verbose: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = ["/usr/bin/storescu", *(["-v"] if verbose else []), "-xy", "-aet", "HOSP_PACS", "-aec", "VERA_GW"]
    cmd += ["127.0.0.1", str(port)]
    return subprocess.run(
        [*cmd, *map(str, files)], capture_output=True, text=True, timeout=180, env=DCMTK_ENV
    )


def make_studies(root: Path, studies: int, per_study: int) -> list[list[Path]]:
    out = []
    for s in range(studies):
        study = Study()
        sc = [make_small_sc(study=study, number=n + 1, side=16, seed=s * 100) for n in range(per_study)]
        out.append(write_study(root / f"s{s}", sc))
    return out


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, s3: S3Server, bucket: str, orthanc: Any) -> Iterator[Cluster]:
    pacs = orthanc()
    c = Cluster(tmp_path / "cluster", pg_url, (pacs.aet, pacs.dicom_port), (s3.endpoint, bucket))
    c.pacs = pacs  # type: ignore[attr-defined]
    yield c
    c.stop()


def test_cluster_forwards_every_acknowledged_instance_once_through_worker_receiver_and_database_crashes(
    cluster: Cluster, tmp_path: Path, postgres: Postgres
) -> None:
    receivers = [cluster.receiver("recv-a"), cluster.receiver("recv-b")]
    victim = cluster.worker("worker-a", hold="cluster.before_pipeline=600")  # holds the first job it takes
    cluster.wait_workers(1)
    cluster.forwarder()
    studies = make_studies(tmp_path / "in", STUDIES, PER_STUDY)
    with ThreadPoolExecutor(2) as pool:  # half the studies to each receiver, at the same time
        sends = [
            pool.submit(storescu, cluster.ports[r.name], [f for s in studies[i::2] for f in s])
            for i, r in enumerate(receivers)
        ]
        results = [f.result() for f in sends]
    assert all(r.returncode == 0 for r in results), [r.stderr[-500:] for r in results]
    wait_until(lambda: victim.events("fault.hold"), 60)
    (held,) = cluster.sql("SELECT id FROM jobs WHERE state='processing'")
    rescuer = cluster.worker("worker-b", metrics=True)
    wait_until(lambda: "Starting worker on queues" in rescuer.log_text(), 90)
    victim.kill9()  # mid-job: the sweep sees its heart-beat stop and the job runs again on worker-b
    postgres.restart(immediate=True)  # every node must reconnect by itself, worker-b included

    # kill -9 a receiver in the middle of an association: what it acknowledged is forwarded all the same
    late = make_studies(tmp_path / "late", 4, PER_STUDY)
    with ThreadPoolExecutor(1) as pool:
        send = pool.submit(storescu, cluster.ports["recv-b"], [f for s in late for f in s], verbose=True)
        wait_until(lambda: sum(cluster.instance_states().values()) >= STUDIES * PER_STUDY + 5, 60, 0.05)
        receivers[1].kill9()
        interrupted = send.result()
    acked = interrupted.stderr.count("Received Store Response (Success)")
    assert interrupted.returncode != 0 and acked >= 5
    total = sum(cluster.instance_states().values())
    assert STUDIES * PER_STUDY + acked <= total <= STUDIES * PER_STUDY + acked + 1  # +1: committed, not acked

    wait_until(lambda: cluster.instance_states() == {"forwarded": total}, 120, 0.5)
    assert len(cluster.pacs.instances()) == total  # type: ignore[attr-defined]
    jobs = cluster.sql("SELECT id, attempts, state FROM jobs ORDER BY id")
    assert {j["state"] for j in jobs} == {"forwarded"}
    assert [j["attempts"] for j in jobs if j["id"] == held["id"]] == [2]
    assert {r["role"] for r in cluster.sql("SELECT role FROM nodes")} >= {"receive", "forward"}
    assert all(node.alive() for name, node in cluster.nodes.items() if name not in ("worker-a", "recv-b"))
    url = f"http://127.0.0.1:{cluster.ports['worker-b-metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # each worker has its own /metrics
        assert 'vera_gateway_stage_seconds_count{stage="job"}' in response.read().decode()


def test_a_long_job_runs_once_but_a_frozen_worker_is_swept_and_cannot_commit_when_it_wakes_up(
    cluster: Cluster, tmp_path: Path
) -> None:
    receiver = cluster.receiver("recv")
    zombie = cluster.worker("worker-a", hold="cluster.before_pipeline=15")  # a 15 s job; stall_after_s = 4
    (study,) = make_studies(tmp_path / "in", 1, 5)
    assert storescu(cluster.ports[receiver.name], study).returncode == 0
    wait_until(lambda: zombie.events("fault.hold"), 90)
    time.sleep(6)  # longer than the stall timeout: the worker heart-beats, so its job is not taken from it
    assert cluster.sql("SELECT state, attempts FROM jobs") == [{"state": "processing", "attempts": 1}]
    assert not any(node.events("job.worker_lost") for node in cluster.nodes.values())
    assert zombie.proc is not None
    os.killpg(zombie.proc.pid, signal.SIGSTOP)  # frozen (a long GC pause, a hung NFS read): no heart-beat
    try:
        cluster.worker("worker-b")
        wait_until(lambda: cluster.sql("SELECT state, attempts FROM jobs")[0] == done_by_attempt_2, 90, 0.3)
        outputs = cluster.sql("SELECT id, out_path, out_sop_uid FROM instances ORDER BY id")
    finally:
        os.killpg(zombie.proc.pid, signal.SIGCONT)
    wait_until(lambda: zombie.events("job.result_fenced"), 60)
    assert cluster.sql("SELECT state, attempts FROM jobs")[0] == done_by_attempt_2
    assert cluster.sql("SELECT id, out_path, out_sop_uid FROM instances ORDER BY id") == outputs
