"""The PostgreSQL ledger against a real server: migrations, fences, leases, several writers.

The backend-independent state machine is covered by the ledger contract suite (run on both backends); these
tests cover what only a shared ledger needs: concurrent nodes, fencing of presumed-dead workers, leases that
expire, and reconnection after a server restart.
"""

from __future__ import annotations

import threading

import pytest

from gateway.core.ledger import migrations
from gateway.core.ledger.models import (
    Deidentified,
    Duplicate,
    Forwarded,
    InstanceState,
    JobState,
    LedgerError,
    ReceivedInstance,
)
from gateway.core.ledger.postgres import PostgresLedger
from tests.services import Postgres


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def received(n: int, study: str = "study-a", sha: str | None = None) -> ReceivedInstance:
    return ReceivedInstance(
        sop_key=f"sop-{n}",
        study_key=study,
        patient_key="P1",
        sop_class_uid="1.2.3",
        transfer_syntax="1.2",
        sha256=sha or f"{n:064x}",
        spool_path=f"ab/{n}.dcm",
        size=10,
        calling_ae="MODALITY",
        calling_ip="127.0.0.1",
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ledger(pg_url: str, clock: Clock) -> PostgresLedger:
    return PostgresLedger(pg_url, clock, node="node-a", lease_s=60)


def ready_run(ledger: PostgresLedger, clock: Clock, count: int = 2) -> object:
    for n in range(count):
        ledger.record_received(received(n))
    ledger.group_received()
    clock.now += 100
    (job,) = ledger.ready_jobs(quiet_s=10, max_wait_s=600)
    return job


def test_migrations_apply_once_even_when_two_nodes_start_together(pg_url: str, clock: Clock) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            PostgresLedger(pg_url, clock).shutdown()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ledger = PostgresLedger(pg_url, clock)
    assert ledger.schema_versions() == [m.version for m in migrations.MIGRATIONS]
    assert ledger.upgrade() == []


def test_same_bytes_twice_is_one_row_other_bytes_are_flagged(ledger: PostgresLedger) -> None:
    first = ledger.record_received(received(1))
    again = ledger.record_received(received(1))
    other = ledger.record_received(received(1, sha="f" * 64))
    assert (again.instance_id, again.duplicate) == (first.instance_id, Duplicate.SAME_BYTES)
    assert other.duplicate is Duplicate.DIFFERENT_BYTES
    assert ledger.instance(other.instance_id).duplicate_of == first.instance_id


def test_a_presumed_dead_worker_cannot_commit_over_a_newer_attempt(
    ledger: PostgresLedger, clock: Clock
) -> None:
    job = ready_run(ledger, clock)
    stale = ledger.start_job(job)
    assert stale is not None and stale.attempt == 1
    assert ledger.start_job(job) is None  # the same ready job cannot start twice
    # the sweep presumed the worker dead: attempt 2 starts and finishes
    assert ledger.retry_job(ledger.running_job(job.id), "worker-lost", 0)
    fresh = ledger.start_job(ledger.startable_job(job.id))
    assert fresh is not None and fresh.attempt == 2
    done = [Deidentified(i.id, "pacs", f"out/{i.id}.dcm", f"2.25.{i.id}") for i in fresh.instances]
    assert ledger.finish_job(fresh, done) is JobState.DEIDENTIFIED
    # the zombie wakes up: its commit is refused and changes nothing
    assert (
        ledger.finish_job(stale, [Deidentified(i.id, "pacs", "zombie", "2.25.9") for i in stale.instances])
        is None
    )
    assert ledger.quarantine_job(stale, "zombie") is None
    assert {r.out_sop_uid for r in ledger.instances()} == {f"2.25.{i.id}" for i in fresh.instances}
    assert ledger.jobs()[0].attempts == 2


def test_two_forwarders_never_lease_the_same_output_and_a_dead_ones_lease_expires(
    pg_url: str, clock: Clock
) -> None:
    a = PostgresLedger(pg_url, clock, node="fwd-a", lease_s=60)
    b = PostgresLedger(pg_url, clock, node="fwd-b", lease_s=60)
    job = ready_run(a, clock, count=6)
    run = a.start_job(job)
    a.finish_job(run, [Deidentified(i.id, "pacs", f"o{i.id}", f"2.25.{i.id}") for i in run.instances])
    got_a, got_b = a.lease_outputs(limit=4), b.lease_outputs(limit=4)
    assert len(got_a) == 4 and len(got_b) == 2
    assert not {i.instance_id for i in got_a} & {i.instance_id for i in got_b}
    assert b.lease_outputs() == []  # everything is leased
    assert len(b.record_forwarding([Forwarded(i) for i in got_b])) == 2
    clock.now += 61  # fwd-a died holding 4 items: its lease runs out, fwd-b takes them over
    taken = b.lease_outputs()
    assert {i.instance_id for i in taken} == {i.instance_id for i in got_a}
    assert len(b.record_forwarding([Forwarded(i) for i in taken])) == 4
    assert a.record_forwarding([Forwarded(i) for i in got_a]) == []  # a late duplicate report is fenced
    assert {r.state for r in a.instances()} == {InstanceState.FORWARDED}
    assert a.jobs()[0].state is JobState.FORWARDED


def test_concurrent_grouping_from_two_nodes_makes_one_job_per_study(pg_url: str, clock: Clock) -> None:
    nodes = [PostgresLedger(pg_url, clock, node=f"n{i}") for i in range(2)]
    for n in range(40):
        nodes[n % 2].record_received(received(n, study=f"study-{n % 4}"))
    threads = [threading.Thread(target=node.group_received) for node in nodes for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = nodes[0].jobs()
    assert sorted(j.study_key for j in jobs) == [f"study-{k}" for k in range(4)]
    assert {r.state for r in nodes[0].instances()} == {InstanceState.GROUPED}


def test_the_ledger_reconnects_by_itself_after_a_server_restart(
    ledger: PostgresLedger, postgres: Postgres
) -> None:
    ledger.record_received(received(1))
    postgres.restart(immediate=True)
    for _ in range(3):  # the pool may hand out one dead connection: the call fails cleanly, the next works
        try:
            ledger.record_received(received(2))
            break
        except LedgerError:
            continue
    assert len(ledger.instances()) == 2


def test_an_unreachable_server_is_a_ledger_error(clock: Clock) -> None:
    from tests.conftest import free_port

    with pytest.raises(LedgerError):
        PostgresLedger(f"postgresql://vera@127.0.0.1:{free_port()}/x", clock)
