"""Spool and ledger: atomic writes, duplicates, grouping (quiet period, max wait, follow-ups), recovery."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from gateway.core.ledger import Duplicate, InstanceState, JobState, Ledger, ReceivedInstance
from gateway.core.spool import ContentStore, atomic_write


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def item(sop: str, study: str = "st1", sha: str = "h1", patient: str = "P1") -> ReceivedInstance:
    return ReceivedInstance(
        sop,
        study,
        patient,
        "1.2.840.10008.5.1.4.1.1.7",
        "1.2.840.10008.1.2.1",
        sha,
        f"{sha[:2]}/{sha}.dcm",
        10,
        "HOSP",
        "127.0.0.1",
    )


def test_atomic_write_leaves_nothing_when_disk_full(tmp_path: Path) -> None:
    def full_disk(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    store = ContentStore(tmp_path / "spool", writer=full_disk)
    with pytest.raises(OSError):
        store.put(b"x" * 100)
    assert [p for p in (tmp_path / "spool").rglob("*") if p.is_file()] == []


def test_content_store_names_files_by_hash_and_is_idempotent(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    first, second = store.put(b"abc"), store.put(b"abc")
    assert first == second and first.relpath.endswith(first.sha256 + ".dcm")
    assert store.read(first.relpath) == b"abc"
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / ".dead.tmp").write_bytes(b"half")
    assert store.clean_temp_files() == 1


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    atomic_write(tmp_path / "f", b"one")
    atomic_write(tmp_path / "f", b"two")
    assert (tmp_path / "f").read_bytes() == b"two" and len(list(tmp_path.iterdir())) == 1


def test_duplicate_same_bytes_is_idempotent_and_different_bytes_flagged(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    first = ledger.record_received(item("s1"))
    assert first.duplicate is Duplicate.NO
    assert ledger.record_received(item("s1")) == type(first)(first.instance_id, Duplicate.SAME_BYTES)
    other = ledger.record_received(item("s1", sha="h2"))
    assert other.duplicate is Duplicate.DIFFERENT_BYTES and other.instance_id != first.instance_id
    rows = ledger.query("SELECT duplicate_of FROM instances WHERE id=?", (other.instance_id,))
    assert rows[0]["duplicate_of"] == first.instance_id


def test_job_ready_after_quiet_period_and_late_instance_starts_follow_up(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "l.db", clock=clock)
    ledger.record_received(item("a"))
    ledger.record_received(item("b", sha="h2"))
    assert len({job for _, job in ledger.group_received()}) == 1
    assert ledger.ready_jobs(quiet_s=30, max_wait_s=600) == []
    clock.now += 31
    (job,) = ledger.ready_jobs(quiet_s=30, max_wait_s=600)
    assert job.patient_key == "P1" and len(ledger.start_job(job.id)) == 2
    ledger.record_received(item("c", sha="h3"))  # late instance of the same study
    ((_, follow_id),) = ledger.group_received()
    follow = ledger.query("SELECT * FROM jobs WHERE id=?", (follow_id,))[0]
    assert follow_id != job.id and follow["follow_up_of"] == job.id and follow["study_key"] == "st1"


def test_max_wait_makes_a_busy_study_ready(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "l.db", clock=clock)
    for n in range(5):
        clock.now += 10
        ledger.record_received(item(f"s{n}", sha=f"h{n}"))
        ledger.group_received()
    assert ledger.ready_jobs(quiet_s=30, max_wait_s=45) == []
    clock.now += 6
    assert len(ledger.ready_jobs(quiet_s=30, max_wait_s=45)) == 1


def test_recover_requeues_processing_jobs_and_keeps_finished_instances(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    a = ledger.record_received(item("a")).instance_id
    b = ledger.record_received(item("b", sha="h2")).instance_id
    ledger.group_received()
    (job,) = ledger.ready_jobs(0, 600)
    ledger.start_job(job.id)
    ledger.finish_instance_ok(a, "dest", "aa/out.dcm", "2.25.1")
    assert ledger.recover() == {"jobs_requeued": 1, "instances_requeued": 1}
    (again,) = ledger.ready_jobs(0, 600)
    assert [r["id"] for r in ledger.start_job(again.id)] == [b]
    assert ledger.due_outputs()[0].instance_id == a


def test_forward_failure_then_success_settles_job(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "l.db", clock=clock)
    iid = ledger.record_received(item("a")).instance_id
    ledger.group_received()
    (job,) = ledger.ready_jobs(0, 600)
    ledger.start_job(job.id)
    ledger.finish_instance_ok(iid, "dest", "aa/out.dcm", "2.25.1")
    (out,) = ledger.due_outputs()
    ledger.mark_forward_failed(out, "association-refused", delay_s=5)
    assert ledger.due_outputs() == []
    clock.now += 5
    (retry,) = ledger.due_outputs()
    assert retry.attempts == 1 and retry.first_failure_at == 1000.0
    ledger.mark_forwarded(iid)
    assert ledger.query("SELECT state FROM jobs")[0]["state"] == JobState.FORWARDED


def test_quarantine_replay_regroups_instance(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    iid = ledger.record_received(item("a")).instance_id
    ledger.group_received()
    (job,) = ledger.ready_jobs(0, 600)
    ledger.start_job(job.id)
    qid = ledger.quarantine_instance(iid, "pixels:no-face")
    assert ledger.query("SELECT state FROM jobs")[0]["state"] == JobState.QUARANTINED
    assert ledger.release_quarantine(qid) == InstanceState.RECEIVED
    ((_, new_job),) = ledger.group_received()
    assert new_job != job.id
    with pytest.raises(LookupError):
        ledger.release_quarantine(qid)


def test_due_outputs_skip_blocked_destinations(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    for n, dest in enumerate(["down"] * 3 + ["up"]):
        iid = ledger.record_received(item(f"s{n}", study=f"st{n}", sha=f"h{n}")).instance_id
        ledger.group_received()
        for job in ledger.ready_jobs(0, 600):
            ledger.start_job(job.id)
        ledger.finish_instance_ok(iid, dest, f"o{n}.dcm", f"2.25.{n}")
    assert [o.destination for o in ledger.due_outputs(limit=2, exclude=["down"])] == ["up"]


def test_retention_keeps_an_outbox_file_another_instance_still_needs(tmp_path: Path) -> None:
    clock = Clock()
    ledger = Ledger(tmp_path / "l.db", clock=clock)
    ids = [ledger.record_received(item("s1", sha=sha)).instance_id for sha in ("h1", "h2")]  # same SOP
    ledger.group_received()
    for job in ledger.ready_jobs(0, 600):
        ledger.start_job(job.id)
    for iid in ids:  # the two versions de-identify to the same bytes: one content-addressed file
        ledger.finish_instance_ok(iid, "pacs", "ab/same.dcm", "2.25.1")
    ledger.mark_forwarded(ids[0])  # the second still waits for its destination
    clock.now += 10
    assert ledger.purge_finished(before=clock.now) == [("h1/h1.dcm", "")]  # returned "ab/same.dcm" before
    assert ledger.due_outputs()[0].out_path == "ab/same.dcm"


def test_resend_after_retention_purge_leaves_no_spool_copy(tmp_path: Path) -> None:
    from io import BytesIO

    from anonymizer.keys import KeyRing
    from gateway.core.intake import SUCCESS, Caller, Intake, StoreRequest
    from tests.conftest import make_small_sc

    clock = Clock()
    ledger = Ledger(tmp_path / "l.db", clock=clock)
    spool = ContentStore(tmp_path / "spool")
    intake = Intake(spool, ContentStore(tmp_path / "q", suffix=".bin"), ledger, KeyRing(b"k" * 32))
    ds = make_small_sc()
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    request = StoreRequest(buf.getvalue(), ds.SOPClassUID, ds.SOPInstanceUID, Caller("HOSP", "127.0.0.1"))
    assert intake.receive(request) == SUCCESS
    (iid,) = [r["id"] for r in ledger.query("SELECT id FROM instances")]
    ledger.drop_instance(iid, "rule:test")
    clock.now += 10
    ((spool_path, _),) = ledger.purge_finished(before=clock.now)
    spool.discard(spool_path)
    assert intake.receive(request) == SUCCESS  # same bytes again: idempotent success
    assert not spool.path(spool_path).exists()  # stayed behind, untracked, before


def test_new_shard_directory_is_made_durable_before_the_file_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.core.spool

    synced: list[Path] = []
    real = gateway.core.spool.fsync_dir
    monkeypatch.setattr(gateway.core.spool, "fsync_dir", lambda p: (synced.append(p), real(p))[1])
    store = ContentStore(tmp_path / "spool")
    stored = store.put(b"photo")
    shard = store.path(stored.relpath).parent
    assert synced == [tmp_path / "spool", shard]  # the root holds the new shard entry; [shard] before
