"""The ledger: every instance and study job with its state, in SQLite (WAL, synchronous=FULL).

Instance states: received → grouped → processing → deidentified → forwarded, plus quarantined(reason),
retry_waiting (forward failed, next attempt scheduled) and dropped (a rule said drop).
Job states: grouped (collecting instances) → processing → deidentified → forwarded, plus quarantined and
retry_waiting (a stage asked to retry). Only keyed hashes and pseudonyms are stored, never original UIDs
or patient identifiers. Time is injected (``clock``) so tests control it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any


class InstanceState(StrEnum):
    RECEIVED = "received"
    GROUPED = "grouped"
    PROCESSING = "processing"
    DEIDENTIFIED = "deidentified"
    FORWARDED = "forwarded"
    QUARANTINED = "quarantined"
    RETRY_WAITING = "retry_waiting"
    DROPPED = "dropped"


class JobState(StrEnum):
    GROUPED = "grouped"
    PROCESSING = "processing"
    DEIDENTIFIED = "deidentified"
    FORWARDED = "forwarded"
    QUARANTINED = "quarantined"
    RETRY_WAITING = "retry_waiting"


class Duplicate(StrEnum):
    NO = "no"
    SAME_BYTES = "same-bytes"  # idempotent: nothing new recorded
    DIFFERENT_BYTES = "different-bytes"  # kept, flagged with duplicate_of


SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    sop_key TEXT NOT NULL, study_key TEXT NOT NULL, patient_key TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL, transfer_syntax TEXT NOT NULL,
    sha256 TEXT NOT NULL, spool_path TEXT NOT NULL, size INTEGER NOT NULL,
    calling_ae TEXT NOT NULL, calling_ip TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', job_id INTEGER, duplicate_of INTEGER,
    received_at REAL NOT NULL, updated_at REAL NOT NULL,
    destination TEXT, out_path TEXT, out_sop_uid TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, first_failure_at REAL, forwarded_at REAL,
    UNIQUE (sop_key, sha256)
);
CREATE INDEX IF NOT EXISTS instances_state ON instances (state);
CREATE INDEX IF NOT EXISTS instances_job ON instances (job_id);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    study_key TEXT NOT NULL, patient_key TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', follow_up_of INTEGER,
    first_at REAL NOT NULL, last_at REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL, created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE INDEX IF NOT EXISTS jobs_study ON jobs (study_key);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,              -- receive | instance | job | forward
    instance_id INTEGER, job_id INTEGER,
    reason TEXT NOT NULL, blob_path TEXT, calling_ae TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL, released_at REAL
);
"""


@dataclass(frozen=True)
class ReceivedInstance:
    """What the SCP learned about one stored instance (keys are keyed hashes / pseudonyms)."""

    sop_key: str
    study_key: str
    patient_key: str
    sop_class_uid: str
    transfer_syntax: str
    sha256: str
    spool_path: str
    size: int
    calling_ae: str
    calling_ip: str


@dataclass(frozen=True)
class ReceiveResult:
    instance_id: int
    duplicate: Duplicate


@dataclass(frozen=True)
class Job:
    id: int
    study_key: str
    patient_key: str
    state: str
    follow_up_of: int | None


@dataclass(frozen=True)
class OutputItem:
    """A de-identified instance waiting to be forwarded."""

    instance_id: int
    job_id: int
    destination: str
    out_path: str
    out_sop_uid: str
    attempts: int
    first_failure_at: float | None


class Ledger:
    """Thread-safe: one SQLite connection per thread, explicit IMMEDIATE transactions."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(self._conn().execute(sql, params))

    # ---- receive ---------------------------------------------------------------------------------------
    def record_received(self, item: ReceivedInstance) -> ReceiveResult:
        """Record a spooled instance. Same SOP+bytes: idempotent; same SOP, other bytes: kept, flagged."""
        now = self.clock()
        with self.transaction() as db:
            rows = list(
                db.execute("SELECT id, sha256 FROM instances WHERE sop_key=? ORDER BY id", (item.sop_key,))
            )
            for row in rows:
                if row["sha256"] == item.sha256:
                    return ReceiveResult(row["id"], Duplicate.SAME_BYTES)
            cur = db.execute(
                "INSERT INTO instances (sop_key, study_key, patient_key, sop_class_uid, transfer_syntax,"
                " sha256, spool_path, size, calling_ae, calling_ip, state, duplicate_of,"
                " received_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    item.sop_key,
                    item.study_key,
                    item.patient_key,
                    item.sop_class_uid,
                    item.transfer_syntax,
                    item.sha256,
                    item.spool_path,
                    item.size,
                    item.calling_ae,
                    item.calling_ip,
                    InstanceState.RECEIVED,
                    rows[0]["id"] if rows else None,
                    now,
                    now,
                ),
            )
            dup = Duplicate.DIFFERENT_BYTES if rows else Duplicate.NO
            return ReceiveResult(int(cur.lastrowid or 0), dup)

    def purge_finished(self, before: float, limit: int = 1000) -> list[tuple[str, str]]:
        """Forget the files of instances forwarded or dropped before ``before``: returns their (spool, outbox)
        relative paths, which the caller deletes. Rows stay (audit, duplicates); quarantined ones never."""
        with self.transaction() as db:
            rows = list(
                db.execute(
                    "SELECT id, spool_path, COALESCE(out_path, '') AS out_path FROM instances"
                    " WHERE state IN (?,?) AND updated_at<? AND spool_path<>'' ORDER BY id LIMIT ?",
                    (InstanceState.FORWARDED, InstanceState.DROPPED, before, limit),
                )
            )
            db.executemany(
                "UPDATE instances SET spool_path='', out_path='' WHERE id=?", [(r["id"],) for r in rows]
            )
            # identical outputs share one content-addressed file: keep it while another row still needs it
            kept = {r["out_path"] for r in rows if r["out_path"] and self._out_path_in_use(db, r["out_path"])}
        return [(r["spool_path"], "" if r["out_path"] in kept else r["out_path"]) for r in rows]

    @staticmethod
    def _out_path_in_use(db: sqlite3.Connection, out_path: str) -> bool:
        row = db.execute("SELECT 1 FROM instances WHERE out_path=? LIMIT 1", (out_path,)).fetchone()
        return row is not None

    def spool_paths(self) -> set[str]:
        return {r["spool_path"] for r in self.query("SELECT spool_path FROM instances WHERE spool_path<>''")}

    def spool_path_in_use(self, relpath: str) -> bool:
        return bool(self.query("SELECT 1 FROM instances WHERE spool_path=? LIMIT 1", (relpath,)))

    # ---- grouping --------------------------------------------------------------------------------------
    def group_received(self) -> list[tuple[int, int]]:
        """Attach every received instance to the collecting job of its study (or a new/follow-up job)."""
        now = self.clock()
        assigned: list[tuple[int, int]] = []
        with self.transaction() as db:
            pending = list(
                db.execute(
                    "SELECT id, study_key, patient_key, received_at FROM instances WHERE state=? ORDER BY id",
                    (InstanceState.RECEIVED,),
                )
            )
            for row in pending:
                job_id = self._collecting_job(db, row["study_key"], row["patient_key"], now)
                db.execute(
                    "UPDATE jobs SET last_at=MAX(last_at, ?), updated_at=? WHERE id=?",
                    (row["received_at"], now, job_id),
                )
                db.execute(
                    "UPDATE instances SET state=?, job_id=?, updated_at=? WHERE id=?",
                    (InstanceState.GROUPED, job_id, now, row["id"]),
                )
                assigned.append((row["id"], job_id))
        return assigned

    def _collecting_job(self, db: sqlite3.Connection, study_key: str, patient_key: str, now: float) -> int:
        row = db.execute(
            "SELECT id FROM jobs WHERE study_key=? AND state=? ORDER BY id DESC LIMIT 1",
            (study_key, JobState.GROUPED),
        ).fetchone()
        if row is not None:
            return int(row["id"])
        prev = db.execute("SELECT MAX(id) AS id FROM jobs WHERE study_key=?", (study_key,)).fetchone()
        cur = db.execute(
            "INSERT INTO jobs (study_key, patient_key, state, follow_up_of, first_at, last_at, created_at,"
            " updated_at) VALUES (?,?,?,?,?,?,?,?)",
            (study_key, patient_key, JobState.GROUPED, prev["id"], now, now, now, now),
        )
        return int(cur.lastrowid or 0)

    def ready_jobs(self, quiet_s: float, max_wait_s: float, limit: int = 100) -> list[Job]:
        """Jobs whose study was quiet long enough (or waited too long), and retries that are due."""
        now = self.clock()
        rows = self.query(
            "SELECT * FROM jobs WHERE (state=? AND (last_at<=? OR first_at<=?))"
            " OR (state=? AND next_attempt_at<=?) ORDER BY id LIMIT ?",
            (JobState.GROUPED, now - quiet_s, now - max_wait_s, JobState.RETRY_WAITING, now, limit),
        )
        return [Job(r["id"], r["study_key"], r["patient_key"], r["state"], r["follow_up_of"]) for r in rows]

    # ---- processing ------------------------------------------------------------------------------------
    def start_job(self, job_id: int) -> list[sqlite3.Row]:
        """Mark a job and its instances processing; returns the instance rows to process."""
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state=?, attempts=attempts+1, updated_at=? WHERE id=?",
                (JobState.PROCESSING, now, job_id),
            )
            db.execute(
                "UPDATE instances SET state=?, updated_at=? WHERE job_id=? AND state IN (?,?)",
                (InstanceState.PROCESSING, now, job_id, InstanceState.GROUPED, InstanceState.PROCESSING),
            )
            return list(
                db.execute(
                    "SELECT * FROM instances WHERE job_id=? AND state=? ORDER BY id",
                    (job_id, InstanceState.PROCESSING),
                )
            )

    def apply_job_result(self, job_id: int, items: Sequence[tuple[int, str, dict[str, Any]]]) -> str:
        """Record a finished job in one transaction: (instance_id, state, fields) per instance.

        A quarantined instance also gets a quarantine record (fields carry ``reason``). Returns the job state.
        """
        now = self.clock()
        with self.transaction() as db:
            for instance_id, state, fields in items:
                cols = "".join(f", {k}=?" for k in fields)
                db.execute(
                    f"UPDATE instances SET state=?, updated_at=?{cols} WHERE id=? AND job_id=?",
                    (state, now, *fields.values(), instance_id, job_id),
                )
                if state == InstanceState.QUARANTINED:
                    db.execute(
                        "INSERT INTO quarantine (kind, instance_id, job_id, reason, calling_ae, created_at)"
                        " SELECT 'instance', id, job_id, ?, calling_ae, ? FROM instances WHERE id=?",
                        (fields.get("reason", ""), now, instance_id),
                    )
            return self._settle_job(db, job_id, now)

    def job_attempts(self, job_id: int) -> int:
        rows = self.query("SELECT attempts FROM jobs WHERE id=?", (job_id,))
        return int(rows[0]["attempts"]) if rows else 0

    def job_instance_ids(self, job_id: int, state: InstanceState) -> list[int]:
        rows = self.query("SELECT id FROM instances WHERE job_id=? AND state=? ORDER BY id", (job_id, state))
        return [int(r["id"]) for r in rows]

    def quarantine_job(self, job_id: int, reason: str) -> int:
        """Quarantine every unfinished instance of a job (a stage kept failing); returns how many."""
        now = self.clock()
        with self.transaction() as db:
            ids = [
                r["id"]
                for r in db.execute(
                    "SELECT id FROM instances WHERE job_id=? AND state IN (?,?,?)",
                    (job_id, InstanceState.RECEIVED, InstanceState.GROUPED, InstanceState.PROCESSING),
                )
            ]
            for iid in ids:
                db.execute(
                    "UPDATE instances SET state=?, reason=?, updated_at=? WHERE id=?",
                    (InstanceState.QUARANTINED, reason, now, iid),
                )
                db.execute(
                    "INSERT INTO quarantine (kind, instance_id, job_id, reason, calling_ae, created_at)"
                    " SELECT 'job', id, job_id, ?, calling_ae, ? FROM instances WHERE id=?",
                    (reason, now, iid),
                )
            self._settle_job(db, job_id, now)
            return len(ids)

    def finish_instance_ok(self, instance_id: int, destination: str, out_path: str, out_sop_uid: str) -> None:
        self._set_instance(
            instance_id,
            InstanceState.DEIDENTIFIED,
            destination=destination,
            out_path=out_path,
            out_sop_uid=out_sop_uid,
            attempts=0,
            next_attempt_at=None,
            first_failure_at=None,
        )

    def drop_instance(self, instance_id: int, reason: str) -> None:
        self._set_instance(instance_id, InstanceState.DROPPED, reason=reason)

    def quarantine_instance(self, instance_id: int, reason: str, kind: str = "instance") -> int:
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "UPDATE instances SET state=?, reason=?, updated_at=? WHERE id=?",
                (InstanceState.QUARANTINED, reason, now, instance_id),
            )
            row = db.execute("SELECT job_id, calling_ae FROM instances WHERE id=?", (instance_id,)).fetchone()
            cur = db.execute(
                "INSERT INTO quarantine (kind, instance_id, job_id, reason, calling_ae, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (kind, instance_id, row["job_id"], reason, row["calling_ae"], now),
            )
            self._settle_job(db, int(row["job_id"]), now)
            return int(cur.lastrowid or 0)

    def quarantine_received(self, reason: str, blob_path: str | None, calling_ae: str) -> int:
        """A dataset rejected at receive time (unparseable, non-conformant): no instance row exists."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO quarantine (kind, reason, blob_path, calling_ae, created_at) VALUES (?,?,?,?,?)",
                ("receive", reason, blob_path, calling_ae, self.clock()),
            )
            return int(cur.lastrowid or 0)

    def settle_job(self, job_id: int) -> str:
        """Move a job to its state from its instances' states; returns the new state."""
        with self.transaction() as db:
            return self._settle_job(db, job_id, self.clock())

    def _settle_job(self, db: sqlite3.Connection, job_id: int, now: float) -> str:
        states = {r["state"] for r in db.execute("SELECT state FROM instances WHERE job_id=?", (job_id,))}
        active = {InstanceState.RECEIVED, InstanceState.GROUPED, InstanceState.PROCESSING}
        if states & active:
            return str(db.execute("SELECT state FROM jobs WHERE id=?", (job_id,)).fetchone()["state"])
        if states & {InstanceState.DEIDENTIFIED, InstanceState.RETRY_WAITING}:
            new = JobState.DEIDENTIFIED
        elif InstanceState.FORWARDED in states:
            new = JobState.FORWARDED
        else:
            new = JobState.QUARANTINED if InstanceState.QUARANTINED in states else JobState.FORWARDED
        db.execute("UPDATE jobs SET state=?, updated_at=? WHERE id=?", (new, now, job_id))
        return str(new)

    def retry_job(self, job_id: int, reason: str, delay_s: float) -> None:
        """A stage asked to retry: the job waits, its instances go back to grouped."""
        now = self.clock()
        with self.transaction() as db:
            db.execute(
                "UPDATE jobs SET state=?, reason=?, next_attempt_at=?, updated_at=? WHERE id=?",
                (JobState.RETRY_WAITING, reason, now + delay_s, now, job_id),
            )
            db.execute(
                "UPDATE instances SET state=?, updated_at=? WHERE job_id=? AND state=?",
                (InstanceState.GROUPED, now, job_id, InstanceState.PROCESSING),
            )

    def _set_instance(self, instance_id: int, state: InstanceState, **fields: Any) -> None:
        now = self.clock()
        cols = ", ".join(f"{k}=?" for k in fields)
        sql = f"UPDATE instances SET state=?, updated_at=?{', ' + cols if cols else ''} WHERE id=?"
        with self.transaction() as db:
            db.execute(sql, (state, now, *fields.values(), instance_id))
            row = db.execute("SELECT job_id FROM instances WHERE id=?", (instance_id,)).fetchone()
            if row["job_id"] is not None:
                self._settle_job(db, int(row["job_id"]), now)

    # ---- forwarding ------------------------------------------------------------------------------------
    def due_outputs(self, limit: int = 500, exclude: Sequence[str] = ()) -> list[OutputItem]:
        """Outputs to send now, oldest first; ``exclude`` skips destinations whose breaker is open."""
        skip = f" AND destination NOT IN ({','.join('?' * len(exclude))})" if exclude else ""
        rows = self.query(
            "SELECT * FROM instances WHERE (state=? OR (state=? AND next_attempt_at<=?))"
            f"{skip} ORDER BY id LIMIT ?",
            (InstanceState.DEIDENTIFIED, InstanceState.RETRY_WAITING, self.clock(), *exclude, limit),
        )
        return [
            OutputItem(
                r["id"],
                r["job_id"],
                r["destination"],
                r["out_path"],
                r["out_sop_uid"],
                r["attempts"],
                r["first_failure_at"],
            )
            for r in rows
        ]

    def mark_forwarded(self, instance_id: int) -> None:
        self._set_instance(instance_id, InstanceState.FORWARDED, forwarded_at=self.clock(), reason="")

    def mark_forward_failed(self, item: OutputItem, reason: str, delay_s: float) -> None:
        now = self.clock()
        first = item.first_failure_at if item.first_failure_at is not None else now
        self._set_instance(
            item.instance_id,
            InstanceState.RETRY_WAITING,
            reason=reason,
            attempts=item.attempts + 1,
            next_attempt_at=now + delay_s,
            first_failure_at=first,
        )

    # ---- recovery, status, quarantine ------------------------------------------------------------------
    def recover(self) -> dict[str, int]:
        """After a crash: jobs that were processing run again; nothing else needs to move."""
        now = self.clock()
        with self.transaction() as db:
            jobs = db.execute(
                "UPDATE jobs SET state=?, updated_at=? WHERE state=?",
                (JobState.GROUPED, now, JobState.PROCESSING),
            ).rowcount
            inst = db.execute(
                "UPDATE instances SET state=?, updated_at=? WHERE state=?",
                (InstanceState.GROUPED, now, InstanceState.PROCESSING),
            ).rowcount
        return {"jobs_requeued": jobs, "instances_requeued": inst}

    def counts(self) -> dict[str, dict[str, tuple[int, float | None]]]:
        """{'instances'|'jobs': {state: (count, oldest updated_at)}}."""
        out: dict[str, dict[str, tuple[int, float | None]]] = {}
        for table in ("instances", "jobs"):
            rows = self.query(
                f"SELECT state, COUNT(*) AS n, MIN(updated_at) AS oldest FROM {table} GROUP BY state"
            )
            out[table] = {r["state"]: (int(r["n"]), r["oldest"]) for r in rows}
        return out

    def quarantine_items(self, include_released: bool = False) -> list[sqlite3.Row]:
        where = "" if include_released else " WHERE released_at IS NULL"
        return self.query(f"SELECT * FROM quarantine{where} ORDER BY id")

    def quarantine_item(self, item_id: int) -> sqlite3.Row | None:
        rows = self.query("SELECT * FROM quarantine WHERE id=?", (item_id,))
        return rows[0] if rows else None

    def release_quarantine(self, item_id: int) -> str:
        """Replay: a pipeline quarantine is regrouped (a follow-up job); a forward give-up is re-forwarded."""
        now = self.clock()
        with self.transaction() as db:
            item = db.execute(
                "SELECT * FROM quarantine WHERE id=? AND released_at IS NULL", (item_id,)
            ).fetchone()
            if item is None or item["instance_id"] is None:
                raise LookupError("no releasable quarantine item with that id")
            if item["kind"] == "forward":
                db.execute(
                    "UPDATE instances SET state=?, attempts=0, next_attempt_at=NULL, first_failure_at=NULL,"
                    " reason='', updated_at=? WHERE id=?",
                    (InstanceState.DEIDENTIFIED, now, item["instance_id"]),
                )
                new_state = InstanceState.DEIDENTIFIED
                db.execute("UPDATE jobs SET state=? WHERE id=?", (JobState.DEIDENTIFIED, item["job_id"]))
            else:
                db.execute(
                    "UPDATE instances SET state=?, job_id=NULL, reason='', received_at=?, updated_at=?"
                    " WHERE id=?",
                    (InstanceState.RECEIVED, now, now, item["instance_id"]),
                )
                new_state = InstanceState.RECEIVED
            db.execute("UPDATE quarantine SET released_at=? WHERE id=?", (now, item_id))
            return str(new_state)
