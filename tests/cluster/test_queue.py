"""Dispatch on Procrastinate against a real PostgreSQL: the coordinator defers each ready job once, refills a
queue that lost entries, and turns the entries of a worker that stopped heart-beating into a retry (attempt
+ 1) or, after ``max_job_attempts``, a quarantine with a reason. A dead worker is made the way it looks in
the database: its row's heart-beat is old and its entry is still ``doing``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.cluster.queue import TASK_NAME, WORKER_LOST, Coordinator
from gateway.core.config import GatewayConfig
from gateway.core.ledger import InstanceState, JobState, QuarantineKind, ReceivedInstance
from gateway.core.ledger.postgres import PostgresLedger
from tests.cluster.nodes import wait_until


def received(n: int, study: str) -> ReceivedInstance:
    return ReceivedInstance(
        f"sop-{n}", study, "P1", "1.2.3", "1.2", f"{n:064x}", f"ab/{n}.dcm", 10, "AE", "::1"
    )


@pytest.fixture
def coordinator(tmp_path: Path, pg_url: str) -> Any:
    config = GatewayConfig(data_dir=tmp_path, ledger=pg_url, quiet_period_s=0, max_job_attempts=2)
    coordinator = Coordinator(config, PostgresLedger(pg_url))
    yield coordinator
    coordinator.close()


def queue(coordinator: Coordinator) -> list[dict[str, Any]]:
    return coordinator.ledger.query(
        "SELECT id, status, queueing_lock, (args->>'job_id')::int AS job_id FROM procrastinate_jobs"
        " WHERE task_name=%s ORDER BY id",
        (TASK_NAME,),
    )


def die_while_running(coordinator: Coordinator, entry_id: int) -> None:
    """A worker takes the entry, starts the ledger run, and is killed: its heart-beat stays an hour old."""
    ledger = coordinator.ledger
    (worker,) = ledger.query(
        "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (NOW() - INTERVAL '1 hour') RETURNING id"
    )
    ledger.query(
        "UPDATE procrastinate_jobs SET status='doing', worker_id=%s WHERE id=%s", (worker["id"], entry_id)
    )
    (entry,) = [e for e in queue(coordinator) if e["id"] == entry_id]
    job = ledger.startable_job(entry["job_id"])
    assert job is not None and ledger.start_job(job) is not None


def test_each_ready_job_is_queued_once_and_a_lost_entry_is_queued_again(coordinator: Coordinator) -> None:
    for n in range(6):
        coordinator.ledger.record_received(received(n, f"study-{n % 3}"))
    assert coordinator.tick()["deferred"] == 3
    assert coordinator.tick()["deferred"] == 0  # still queued: nothing new
    entries = queue(coordinator)
    assert sorted(e["job_id"] for e in entries) == [1, 2, 3]
    assert {e["queueing_lock"] for e in entries} == {"vera-job-1", "vera-job-2", "vera-job-3"}
    coordinator.ledger.query("DELETE FROM procrastinate_jobs WHERE id=%s", (entries[0]["id"],))
    assert coordinator.reconcile() == 1  # the ledger is the source of truth
    assert sorted(e["job_id"] for e in queue(coordinator)) == [1, 2, 3]


def test_a_dead_workers_job_is_retried_then_quarantined_after_max_attempts(coordinator: Coordinator) -> None:
    ledger = coordinator.ledger
    for n in range(2):
        ledger.record_received(received(n, "study"))
    coordinator.tick()
    (entry,) = queue(coordinator)
    die_while_running(coordinator, entry["id"])
    assert coordinator.sweep() == 1
    (job,) = ledger.jobs()
    assert (job.state, job.attempts, job.reason) == (JobState.RETRY_WAITING, 1, WORKER_LOST)
    (entry,) = queue(coordinator)
    assert entry["status"] == "todo"  # the same entry runs again: it starts attempt 2
    die_while_running(coordinator, entry["id"])  # attempt 2 crashes its worker too
    assert coordinator.sweep() == 1
    (job,) = ledger.jobs()
    assert (job.state, job.attempts) == (JobState.QUARANTINED, 2)
    assert {i.state for i in ledger.instances()} == {InstanceState.QUARANTINED}
    items = ledger.quarantine_items()
    assert len(items) == 2 and {(i.kind, i.reason) for i in items} == {
        (QuarantineKind.JOB, f"{WORKER_LOST}:attempts=2")
    }
    assert coordinator.sweep() == 0  # the entry went back to the queue: it will find nothing to start
    assert coordinator.ledger.startable_job(job.id) is None


def test_doctor_reports_the_cluster(tmp_path: Path, pg_url: str, s3: Any, bucket: str) -> None:
    from gateway.cluster.doctor import cluster_checks
    from gateway.core.config import ObjectStoreSettings

    store = ObjectStoreSettings(bucket=bucket, endpoint_url=s3.endpoint, connect_timeout_s=1, max_attempts=1)
    config = GatewayConfig(data_dir=tmp_path, ledger=pg_url, object_store=store)
    before = {name: status for name, status, *_ in cluster_checks(config)}
    assert before == {"postgresql": "ok", "migrations": "fail"}  # nothing started on this database yet
    PostgresLedger(pg_url).shutdown()  # a node starts: migrations applied
    after = {name: status for name, status, *_ in cluster_checks(config)}
    assert after == {
        "postgresql": "ok",
        "migrations": "ok",
        "workers": "warn",
        "nodes": "ok",
        "object store": "ok",
    }
    gone = config.model_copy(update={"object_store": store.model_copy(update={"bucket": "no-such-bucket"})})
    assert dict((n, s) for n, s, *_ in cluster_checks(gone))["object store"] == "fail"


def test_a_run_whose_queue_entry_closed_without_a_result_is_taken_over(tmp_path: Path, pg_url: str) -> None:
    """The worker lost the database for longer than it retried its commit: Procrastinate marked the entry
    failed, the ledger still says processing. The coordinator retries the run once it is stall_after_s old."""
    config = GatewayConfig(data_dir=tmp_path, ledger=pg_url, quiet_period_s=0, stall_after_s=0.2)
    coordinator = Coordinator(config, PostgresLedger(pg_url))
    try:
        ledger = coordinator.ledger
        ledger.record_received(received(1, "study"))
        coordinator.tick()
        (entry,) = queue(coordinator)
        job = ledger.startable_job(entry["job_id"])
        assert job is not None and ledger.start_job(job) is not None
        ledger.query("UPDATE procrastinate_jobs SET status='failed' WHERE id=%s", (entry["id"],))
        assert coordinator.sweep_orphaned_runs() == 0  # too fresh: it may still be committing
        wait_until(lambda: coordinator.sweep_orphaned_runs() == 1, 5)
        (after,) = ledger.jobs()
        assert (after.state, after.attempts, after.reason) == (JobState.RETRY_WAITING, 1, WORKER_LOST)
        assert coordinator.reconcile() == 1  # queued again: attempt 2 will run
    finally:
        coordinator.close()
