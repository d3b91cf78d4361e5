"""The ledger contract, run against every backend (``BACKENDS``; SQLite here, a cluster backend adds itself):
duplicates, grouping (quiet period, max wait, follow-ups), fenced transitions, batch transactions,
recovery, forwarding, quarantine and replay, retention, and the typed reads.

Only the public interface (:class:`gateway.core.ledger.Ledger`) is used, so a new backend passes or fails
the same tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import pytest

from anonymizer.keys import KeyRing
from gateway.core.intake import OUT_OF_RESOURCES, SUCCESS, Caller, Intake, StoreRequest
from gateway.core.ledger import (
    Deidentified,
    Dropped,
    Duplicate,
    Forwarded,
    ForwardGaveUp,
    ForwardRetry,
    InstanceState,
    JobRun,
    JobState,
    Ledger,
    LedgerError,
    OutputItem,
    PurgedFiles,
    Quarantined,
    QuarantineKind,
    ReceivedInstance,
    SqliteLedger,
)
from gateway.core.spool import ContentStore
from tests.conftest import make_small_sc


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sqlite_backend(request: pytest.FixtureRequest, clock: Callable[[], float]) -> Ledger:
    return SqliteLedger(request.getfixturevalue("tmp_path") / "ledger.sqlite3", clock=clock)


def postgresql_backend(request: pytest.FixtureRequest, clock: Callable[[], float]) -> Ledger:
    """A fresh database on the session's PostgreSQL server (tests/services.py)."""
    from gateway.core.ledger.postgres import PostgresLedger

    return PostgresLedger(request.getfixturevalue("pg_url"), clock=clock)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Callable[[], float]], Ledger]] = {
    "sqlite": sqlite_backend,
    "postgresql": postgresql_backend,
}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=sorted(BACKENDS))
def ledger(request: pytest.FixtureRequest, clock: Clock) -> Iterator[Ledger]:
    opened = BACKENDS[request.param](request, clock)
    yield opened
    opened.close()


def item(sop: str, study: str = "st1", sha: str = "", patient: str = "P1") -> ReceivedInstance:
    sha = sha or f"h-{sop}"
    return ReceivedInstance(
        sop, study, patient, "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.1.2.1",
        sha, f"{sha[:2]}/{sha}.dcm", 10, "HOSP", "127.0.0.1",
    )  # fmt: skip


def store_request() -> StoreRequest:
    """A C-STORE of one small Secondary Capture, as the SCP hands it to the intake."""
    ds = make_small_sc()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return StoreRequest(buf.getvalue(), ds.SOPClassUID, ds.SOPInstanceUID, Caller("HOSP", "127.0.0.1"))


def start(ledger: Ledger) -> JobRun:
    """Group what was received and start the (one) ready job."""
    ledger.group_received()
    (job,) = ledger.ready_jobs(0, 600)
    run = ledger.start_job(job)
    assert run is not None
    return run


def deidentify(ledger: Ledger, *sops: str, destination: str = "pacs", study: str = "st1") -> list[int]:
    """Receive ``sops`` as one study and finish its job with every instance de-identified."""
    ids = [ledger.record_received(item(sop, study=study)).instance_id for sop in sops]
    run = start(ledger)
    outcomes = [Deidentified(i, destination, f"out/{i}.dcm", f"2.25.{i}") for i in ids]
    assert ledger.finish_job(run, outcomes) is JobState.DEIDENTIFIED
    return ids


def due(ledger: Ledger, instance_id: int) -> OutputItem:
    return next(o for o in ledger.due_outputs() if o.instance_id == instance_id)


def state_of(ledger: Ledger, instance_id: int) -> InstanceState:
    found = ledger.instance(instance_id)
    assert found is not None
    return found.state


# ---- receive and grouping ------------------------------------------------------------------------------
def test_duplicate_same_bytes_is_idempotent_and_different_bytes_flagged(ledger: Ledger) -> None:
    first = ledger.record_received(item("s1", sha="h1"))
    assert first.duplicate is Duplicate.NO
    again = ledger.record_received(item("s1", sha="h1"))
    assert (again.instance_id, again.duplicate) == (first.instance_id, Duplicate.SAME_BYTES)
    other = ledger.record_received(item("s1", sha="h2"))
    assert other.duplicate is Duplicate.DIFFERENT_BYTES and other.instance_id != first.instance_id
    flagged = ledger.instance(other.instance_id)
    assert flagged is not None and flagged.duplicate_of == first.instance_id
    assert len(ledger.instances()) == 2


def test_a_group_commit_records_its_batch_in_order_duplicates_included(ledger: Ledger) -> None:
    first, again, other, new = ledger.record_received_many(
        [item("s1", sha="h1"), item("s1", sha="h1"), item("s1", sha="h2"), item("s2")]
    )
    assert first.duplicate is Duplicate.NO and new.duplicate is Duplicate.NO
    assert (again.instance_id, again.duplicate) == (first.instance_id, Duplicate.SAME_BYTES)
    assert other.duplicate is Duplicate.DIFFERENT_BYTES
    flagged = ledger.instance(other.instance_id)
    assert flagged is not None and flagged.duplicate_of == first.instance_id
    assert len(ledger.instances()) == 3


def test_job_ready_after_quiet_period_and_late_instance_starts_follow_up(
    ledger: Ledger, clock: Clock
) -> None:
    ledger.record_received(item("a"))
    ledger.record_received(item("b"))
    assert len({g.job_id for g in ledger.group_received()}) == 1
    assert ledger.ready_jobs(quiet_s=30, max_wait_s=600) == []
    clock.now += 31
    (job,) = ledger.ready_jobs(quiet_s=30, max_wait_s=600)
    run = ledger.start_job(job)
    assert job.patient_key == "P1" and run is not None and len(run.instances) == 2
    ledger.record_received(item("c"))  # late instance of the same study
    (late,) = ledger.group_received()
    (first, follow) = ledger.jobs(study_key="st1")
    assert late.job_id == follow.id != job.id and follow.follow_up_of == first.id == job.id


def test_max_wait_makes_a_busy_study_ready(ledger: Ledger, clock: Clock) -> None:
    for n in range(5):
        clock.now += 10
        ledger.record_received(item(f"s{n}"))
        ledger.group_received()
    assert ledger.ready_jobs(quiet_s=30, max_wait_s=45) == []
    clock.now += 6
    assert len(ledger.ready_jobs(quiet_s=30, max_wait_s=45)) == 1


# ---- fenced job transitions ----------------------------------------------------------------------------
def test_a_job_starts_once_and_a_stale_run_records_nothing(ledger: Ledger) -> None:
    a = ledger.record_received(item("a")).instance_id
    ledger.group_received()
    (job,) = ledger.ready_jobs(0, 600)
    run = ledger.start_job(job)
    assert run is not None and run.attempt == 1
    assert ledger.start_job(job) is None  # a second scheduler with the same snapshot loses
    assert ledger.recover().jobs_requeued == 1  # crash: the job runs again as attempt 2
    (again,) = ledger.ready_jobs(0, 600)
    rerun = ledger.start_job(again)
    assert rerun is not None and rerun.attempt == 2
    assert ledger.finish_job(run, [Deidentified(a, "pacs", "o.dcm", "2.25.1")]) is None  # attempt 1: stale
    assert ledger.retry_job(run, "late", 5) is False and ledger.quarantine_job(run, "late") is None
    assert state_of(ledger, a) is InstanceState.PROCESSING and ledger.due_outputs() == []
    assert ledger.finish_job(rerun, [Deidentified(a, "pacs", "o.dcm", "2.25.1")]) is JobState.DEIDENTIFIED


def test_finish_job_records_every_outcome_and_quarantines_with_a_record(ledger: Ledger) -> None:
    ids = [ledger.record_received(item(s)).instance_id for s in ("ok", "drop", "bad")]
    run = start(ledger)
    outcomes = [
        Deidentified(ids[0], "pacs", "ab/ok.dcm", "2.25.9"),
        Dropped(ids[1], "rule:drop-scout"),
        Quarantined(ids[2], "pixels:no-face"),
    ]
    assert ledger.finish_job(run, outcomes) is JobState.DEIDENTIFIED
    states = [state_of(ledger, i) for i in ids]
    assert states == [InstanceState.DEIDENTIFIED, InstanceState.DROPPED, InstanceState.QUARANTINED]
    (q,) = ledger.quarantine_items()
    assert (q.kind, q.instance_id, q.job_id, q.reason, q.calling_ae) == (
        QuarantineKind.INSTANCE, ids[2], run.job_id, "pixels:no-face", "HOSP",
    )  # fmt: skip
    (out,) = ledger.due_outputs()
    assert (out.out_path, out.out_sop_uid, out.attempts, out.first_failure_at) == (
        "ab/ok.dcm",
        "2.25.9",
        0,
        None,
    )


def test_retry_then_repeated_failure_quarantines_the_unfinished_instances(
    ledger: Ledger, clock: Clock
) -> None:
    ids = [ledger.record_received(item(s)).instance_id for s in ("a", "b")]
    run = start(ledger)
    assert ledger.retry_job(run, "worker-error:BrokenProcessPool", delay_s=5)
    assert [state_of(ledger, i) for i in ids] == [InstanceState.GROUPED] * 2
    assert ledger.ready_jobs(0, 600) == []
    clock.now += 5
    (job,) = ledger.ready_jobs(0, 600)
    assert job.state is JobState.RETRY_WAITING and job.attempts == 1
    second = ledger.start_job(job)
    assert second is not None and second.attempt == 2
    assert ledger.quarantine_job(second, "worker-error:BrokenProcessPool") == 2
    assert {q.kind for q in ledger.quarantine_items()} == {QuarantineKind.JOB}
    assert ledger.jobs()[0].state is JobState.QUARANTINED


def test_recover_requeues_processing_jobs_and_keeps_finished_instances(ledger: Ledger) -> None:
    a = ledger.record_received(item("a")).instance_id
    b = ledger.record_received(item("b")).instance_id
    run = start(ledger)
    with pytest.raises(StopIteration):  # nothing is due while the job runs
        due(ledger, a)
    assert ledger.finish_job(run, [Deidentified(a, "dest", "aa/out.dcm", "2.25.1")]) is JobState.PROCESSING
    recovered = ledger.recover()
    assert (recovered.jobs_requeued, recovered.instances_requeued) == (1, 1)
    (again,) = ledger.ready_jobs(0, 600)
    rerun = ledger.start_job(again)
    assert rerun is not None and [i.id for i in rerun.instances] == [b]
    assert due(ledger, a).instance_id == a


# ---- forwarding ----------------------------------------------------------------------------------------
def test_forward_failure_then_success_settles_job(ledger: Ledger, clock: Clock) -> None:
    (iid,) = deidentify(ledger, "a")
    out = due(ledger, iid)
    assert [
        r.instance_id for r in ledger.record_forwarding([ForwardRetry(out, "association-refused", 5)])
    ] == [iid]
    assert ledger.due_outputs() == []
    clock.now += 5
    retry = due(ledger, iid)
    assert retry.attempts == 1 and retry.first_failure_at == 1000.0
    clock.now += 1
    ledger.record_forwarding([ForwardRetry(retry, "association-refused", 0)])
    assert due(ledger, iid).first_failure_at == 1000.0  # the first failure is kept
    ledger.record_forwarding([Forwarded(due(ledger, iid))])
    forwarded = ledger.instance(iid)
    assert (
        forwarded is not None
        and forwarded.state is InstanceState.FORWARDED
        and forwarded.forwarded_at == 1006
    )
    assert ledger.jobs()[0].state is JobState.FORWARDED


def test_a_tick_records_all_outcomes_of_many_jobs_at_once_and_fences_stale_ones(ledger: Ledger) -> None:
    sent, failed, given_up = (deidentify(ledger, s, study=s)[0] for s in ("a", "b", "c"))
    items = {i: due(ledger, i) for i in (sent, failed, given_up)}
    recorded = ledger.record_forwarding(
        [
            Forwarded(items[sent]),
            ForwardRetry(items[failed], "status:0xA700", 1),
            ForwardGaveUp(items[given_up], "forward-gave-up:status:0xA700"),
        ]
    )
    assert [r.instance_id for r in recorded] == [sent, failed, given_up]
    assert recorded[0].quarantine_id is None and recorded[2].quarantine_id is not None
    states = [state_of(ledger, i) for i in (sent, failed, given_up)]
    assert states == [InstanceState.FORWARDED, InstanceState.RETRY_WAITING, InstanceState.QUARANTINED]
    assert [j.state for j in ledger.jobs()] == [
        JobState.FORWARDED,
        JobState.DEIDENTIFIED,
        JobState.QUARANTINED,
    ]
    # the same snapshots again (a second forwarder, or a late batch): the fences refuse every one
    assert ledger.record_forwarding([Forwarded(items[sent]), Forwarded(items[failed])]) == []
    assert state_of(ledger, failed) is InstanceState.RETRY_WAITING


def test_due_outputs_skip_blocked_destinations(ledger: Ledger) -> None:
    for n, dest in enumerate(["down"] * 3 + ["up"]):
        deidentify(ledger, f"s{n}", destination=dest, study=f"st{n}")
    assert [o.destination for o in ledger.due_outputs(limit=2, exclude=["down"])] == ["up"]
    assert [o.destination for o in ledger.due_outputs(limit=2)] == ["down", "down"]


# ---- quarantine, replay, retention ---------------------------------------------------------------------
def test_quarantine_replay_regroups_instance(ledger: Ledger) -> None:
    iid = ledger.record_received(item("a")).instance_id
    run = start(ledger)
    assert ledger.finish_job(run, [Quarantined(iid, "pixels:no-face")]) is JobState.QUARANTINED
    (q,) = ledger.quarantine_items()
    assert ledger.release_quarantine(q.id) is InstanceState.RECEIVED
    (regrouped,) = ledger.group_received()
    assert regrouped.job_id != run.job_id
    with pytest.raises(LookupError):
        ledger.release_quarantine(q.id)
    assert ledger.quarantine_items() == [] and len(ledger.quarantine_items(include_released=True)) == 1


def test_forward_give_up_replay_forwards_again(ledger: Ledger) -> None:
    (iid,) = deidentify(ledger, "a")
    (recorded,) = ledger.record_forwarding([ForwardGaveUp(due(ledger, iid), "forward-gave-up:connect")])
    assert recorded.quarantine_id is not None
    shown = ledger.quarantine_item(recorded.quarantine_id)
    assert shown is not None and shown.kind is QuarantineKind.FORWARD and shown.released_at is None
    assert ledger.release_quarantine(recorded.quarantine_id) is InstanceState.DEIDENTIFIED
    again = due(ledger, iid)
    assert (again.attempts, again.first_failure_at) == (0, None)
    assert ledger.jobs()[0].state is JobState.DEIDENTIFIED


def test_receive_rejection_is_listed_but_not_replayable(ledger: Ledger) -> None:
    qid = ledger.quarantine_received("sop-class-mismatch", "ab/blob.bin", "HOSP")
    shown = ledger.quarantine_item(qid)
    assert shown is not None and (shown.kind, shown.blob_path, shown.instance_id) == (
        QuarantineKind.RECEIVE, "ab/blob.bin", None,
    )  # fmt: skip
    with pytest.raises(LookupError):
        ledger.release_quarantine(qid)
    assert ledger.quarantine_item(qid + 1000) is None


def test_a_recovered_instance_comes_back_quarantined_and_replays_like_a_pipeline_item(ledger: Ledger) -> None:
    reason = "recovered-after-os-crash"
    qid = ledger.record_recovered(item("a"), reason)
    assert qid is not None
    (row,) = ledger.instances()
    assert (row.state, row.reason, row.job_id) == (InstanceState.QUARANTINED, reason, None)
    shown = ledger.quarantine_item(qid)
    assert shown is not None and (shown.kind, shown.instance_id, shown.job_id) == (
        QuarantineKind.INSTANCE, row.id, None,
    )  # fmt: skip
    assert ledger.spool_paths() == {"h-/h-a.dcm"}
    assert ledger.record_recovered(item("a"), reason) is None  # those bytes are recorded already
    assert ledger.release_quarantine(qid) is InstanceState.RECEIVED
    assert [g.instance_id for g in ledger.group_received()] == [row.id]


def test_retention_keeps_an_outbox_file_another_instance_still_needs(ledger: Ledger, clock: Clock) -> None:
    ids = [ledger.record_received(item("s1", sha=sha)).instance_id for sha in ("h1", "h2")]  # same SOP
    run = start(ledger)
    # the two versions de-identify to the same bytes: one content-addressed file
    ledger.finish_job(run, [Deidentified(i, "pacs", "ab/same.dcm", "2.25.1") for i in ids])
    ledger.record_forwarding([Forwarded(due(ledger, ids[0]))])  # the second still waits for its destination
    clock.now += 10
    assert ledger.purge_finished(before=clock.now) == [PurgedFiles("h1/h1.dcm", "")]
    assert due(ledger, ids[1]).out_path == "ab/same.dcm"
    assert ledger.spool_paths() == {"h2/h2.dcm"} and not ledger.spool_path_in_use("h1/h1.dcm")


def test_resend_after_retention_purge_leaves_no_spool_copy(
    ledger: Ledger, clock: Clock, tmp_path: Path
) -> None:
    spool = ContentStore(tmp_path / "spool")
    intake = Intake(spool, ContentStore(tmp_path / "q", suffix=".bin"), ledger, KeyRing(b"k" * 32))
    request = store_request()
    assert intake.receive(request) == SUCCESS
    (received,) = ledger.instances()
    run = start(ledger)
    ledger.finish_job(run, [Dropped(received.id, "rule:test")])
    clock.now += 10
    (purged,) = ledger.purge_finished(before=clock.now)
    spool.discard(purged.spool_path)
    assert intake.receive(request) == SUCCESS  # same bytes again: idempotent success
    assert not spool.path(purged.spool_path).exists()  # stayed behind, untracked, before


# ---- reads ---------------------------------------------------------------------------------------------
def test_reads_count_states_and_summarise_studies_newest_first(ledger: Ledger, clock: Clock) -> None:
    deidentify(ledger, "a", "b", study="old")
    clock.now += 60
    ledger.record_received(item("c", study="new", patient="P2"))
    counts = ledger.counts()
    assert {s: c.count for s, c in counts.instances.items()} == {"deidentified": 2, "received": 1}
    assert counts.instances[InstanceState.RECEIVED].oldest_updated_at == 1060
    assert {s: c.count for s, c in counts.jobs.items()} == {JobState.DEIDENTIFIED: 1}
    new, old = ledger.studies()
    assert (new.study_key, new.patient_key, new.instances, new.jobs) == ("new", "P2", 1, 0)
    assert new.states == {InstanceState.RECEIVED: 1} and old.states == {InstanceState.DEIDENTIFIED: 2}
    assert (old.first_received_at, old.last_updated_at, new.first_received_at) == (1000, 1000, 1060)
    assert [s.study_key for s in ledger.studies(limit=1, offset=1)] == ["old"]
    assert [r.study_key for r in ledger.instances(state=InstanceState.RECEIVED)] == ["new"]
    assert len(ledger.instances(study_key="old")) == 2 and ledger.instance(10_000) is None


# ---- backend specifics ---------------------------------------------------------------------------------
def test_sqlite_storage_failure_is_a_ledger_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(LedgerError):
        SqliteLedger(path)


def test_a_full_sqlite_ledger_raises_ledger_error_and_the_intake_answers_0xA700(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    db = ledger._conn()  # this connection's size limit stands in for a full disk (SQLITE_FULL)
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(LedgerError, match="full"):
        for n in range(10_000):
            ledger.record_received(item(f"s{n}"))
    spool = ContentStore(tmp_path / "spool")
    intake = Intake(spool, ContentStore(tmp_path / "q", suffix=".bin"), ledger, KeyRing(b"k" * 32))
    assert intake.receive(store_request()) == OUT_OF_RESOURCES
    assert not list(spool.root.rglob("*.dcm"))  # the spooled file is not left behind


def test_a_shared_connection_takes_rows_from_many_threads_and_another_connection_sees_them(
    tmp_path: Path,
) -> None:
    """The receive path's ledger (``shared=True``): one connection for all association threads."""
    import threading

    path = tmp_path / "ledger.sqlite3"
    shared = SqliteLedger(path, synchronous="NORMAL", shared=True)

    def receive(thread: int) -> None:
        for n in range(25):
            sop = f"t{thread}-{n}"
            assert shared.record_received(item(sop, sha=sop)).duplicate is Duplicate.NO
            assert shared.spool_path_in_use(f"{sop[:2]}/{sop}.dcm")

    threads = [threading.Thread(target=receive, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(SqliteLedger(path).instances()) == 200
