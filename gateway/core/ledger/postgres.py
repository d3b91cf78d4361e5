"""The ledger on PostgreSQL (psycopg 3), shared by every node of a cluster.

Same state machine and fences as the SQLite ledger, written for several writers: grouping is serialised by a
transaction-level advisory lock (SQLite's ``BEGIN IMMEDIATE``); forwarders lease due outputs with
``FOR UPDATE SKIP LOCKED`` and an expiry, so two nodes never send one item at the same time and a dead node's
leases run out; every job transition is fenced on ``(id, attempts, state)``, so a worker presumed dead cannot
overwrite a newer attempt. Connections come from a pool that checks them before use, so the nodes reconnect
by themselves after a database restart; a failure surfaces as :class:`LedgerError` and the caller retries.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from gateway.core.ledger import migrations
from gateway.core.ledger.base import Ledger
from gateway.core.ledger.models import (
    FORWARDABLE,
    STARTABLE_JOBS,
    UNFINISHED,
    Deidentified,
    Dropped,
    Duplicate,
    Forwarded,
    ForwardGaveUp,
    ForwardOutcome,
    ForwardRecorded,
    ForwardRetry,
    Grouped,
    InstanceOutcome,
    InstanceRecord,
    InstanceState,
    Job,
    JobInstance,
    JobRecord,
    JobRun,
    JobState,
    LedgerCounts,
    LedgerError,
    OutputItem,
    PurgedFiles,
    QuarantineItem,
    QuarantineKind,
    ReceivedInstance,
    ReceiveResult,
    Recovery,
    StateCount,
    StudySummary,
    settled_job_state,
)

GROUPING_LOCK = 0x76657261_02
INSTANCE_FIELDS = tuple(InstanceRecord.__dataclass_fields__)
JOB_FIELDS = tuple(JobRecord.__dataclass_fields__)
QUARANTINE_FIELDS = tuple(QuarantineItem.__dataclass_fields__)


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresLedger(Ledger):
    """``lease_s``: how long a forwarder owns the outputs it took (longer than one batch send)."""

    def __init__(
        self,
        url: str,
        clock: Callable[[], float] = time.time,
        *,
        node: str | None = None,
        lease_s: float = 300.0,
        pool_size: int = 8,
        upgrade: bool = True,
    ) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        self.url = url
        self.clock = clock
        self.node = node or node_name()
        self.lease_s = lease_s
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"row_factory": dict_row, "connect_timeout": 5},
            check=ConnectionPool.check_connection,
            open=True,
            name="vera-ledger",
        )
        if upgrade:
            self.upgrade()

    # ---- plumbing ------------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=10) as conn, conn.transaction():
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise LedgerError(f"postgresql:{type(exc).__name__}") from exc

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """One statement in its own transaction (the queue adapter's bookkeeping); rows as dicts."""
        with self._tx() as db:
            cur = db.execute(sql, params)
            return list(cur) if cur.description else []

    def upgrade(self) -> list[int]:
        """Apply missing schema migrations (every node does at start-up; a lock makes it happen once)."""
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True) as conn:
                return migrations.upgrade(conn, self.clock)
        except psycopg.Error as exc:
            raise LedgerError(f"postgresql:{type(exc).__name__}") from exc

    def schema_versions(self) -> list[int]:
        with self._tx() as db:
            return migrations.applied_versions(db.cursor(row_factory=_tuple_row()))

    def close(self) -> None:
        """Connections go back to the pool after each transaction: nothing is held per thread."""

    def shutdown(self) -> None:
        self.pool.close()

    # ---- receive -------------------------------------------------------------------------------------
    def record_received(self, item: ReceivedInstance) -> ReceiveResult:
        now = self.clock()
        with self._tx() as db:
            first = db.execute(
                "SELECT id, sha256 FROM instances WHERE sop_key=%s ORDER BY id", (item.sop_key,)
            ).fetchall()
            same = next((r for r in first if r["sha256"] == item.sha256), None)
            if same is not None:
                return ReceiveResult(int(same["id"]), Duplicate.SAME_BYTES)
            row = db.execute(
                "INSERT INTO instances (sop_key, study_key, patient_key, sop_class_uid, transfer_syntax,"
                " sha256, spool_path, size, calling_ae, calling_ip, state, duplicate_of, received_at,"
                " updated_at)"
                " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (sop_key, sha256) DO NOTHING RETURNING id",
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
                    first[0]["id"] if first else None,
                    now,
                    now,
                ),
            ).fetchone()
            if row is None:  # another receiver recorded the same bytes a moment ago
                other = db.execute(
                    "SELECT id FROM instances WHERE sop_key=%s AND sha256=%s", (item.sop_key, item.sha256)
                ).fetchone()
                return ReceiveResult(int(other["id"]), Duplicate.SAME_BYTES)
            return ReceiveResult(int(row["id"]), Duplicate.DIFFERENT_BYTES if first else Duplicate.NO)

    def quarantine_received(self, reason: str, blob_path: str | None, calling_ae: str) -> int:
        with self._tx() as db:
            return self._quarantine_row(db, QuarantineKind.RECEIVE, None, None, reason, calling_ae, blob_path)

    @staticmethod
    def _quarantine_row(
        db: Any,
        kind: QuarantineKind,
        instance_id: int | None,
        job_id: int | None,
        reason: str,
        calling_ae: str,
        blob_path: str | None = None,
        now: float | None = None,
    ) -> int:
        row = db.execute(
            "INSERT INTO quarantine (kind, instance_id, job_id, reason, blob_path, calling_ae, created_at)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (
                kind,
                instance_id,
                job_id,
                reason,
                blob_path,
                calling_ae,
                now if now is not None else time.time(),
            ),
        ).fetchone()
        return int(row["id"])

    # ---- grouping and jobs ---------------------------------------------------------------------------
    def group_received(self) -> list[Grouped]:
        now = self.clock()
        grouped: list[Grouped] = []
        with self._tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(%s)", (GROUPING_LOCK,))
            pending = db.execute(
                "SELECT id, study_key, patient_key, received_at FROM instances WHERE state=%s ORDER BY id",
                (InstanceState.RECEIVED,),
            ).fetchall()
            for row in pending:
                job_id = self._collecting_job(db, row["study_key"], row["patient_key"], now)
                db.execute(
                    "UPDATE jobs SET last_at=GREATEST(last_at, %s), updated_at=%s WHERE id=%s",
                    (row["received_at"], now, job_id),
                )
                db.execute(
                    "UPDATE instances SET state=%s, job_id=%s, updated_at=%s WHERE id=%s",
                    (InstanceState.GROUPED, job_id, now, row["id"]),
                )
                grouped.append(Grouped(int(row["id"]), job_id))
        return grouped

    @staticmethod
    def _collecting_job(db: Any, study_key: str, patient_key: str, now: float) -> int:
        row = db.execute(
            "SELECT id FROM jobs WHERE study_key=%s AND state=%s ORDER BY id DESC LIMIT 1",
            (study_key, JobState.GROUPED),
        ).fetchone()
        if row is not None:
            return int(row["id"])
        prev = db.execute("SELECT MAX(id) AS id FROM jobs WHERE study_key=%s", (study_key,)).fetchone()
        new = db.execute(
            "INSERT INTO jobs (study_key, patient_key, state, follow_up_of, first_at, last_at, created_at,"
            " updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
            (study_key, patient_key, JobState.GROUPED, prev["id"], now, now, now, now),
        ).fetchone()
        return int(new["id"])

    def ready_jobs(self, quiet_s: float, max_wait_s: float, limit: int = 100) -> list[Job]:
        now = self.clock()
        rows = self.query(
            "SELECT * FROM jobs WHERE (state=%s AND (last_at<=%s OR first_at<=%s))"
            " OR (state=%s AND next_attempt_at<=%s) ORDER BY id LIMIT %s",
            (JobState.GROUPED, now - quiet_s, now - max_wait_s, JobState.RETRY_WAITING, now, limit),
        )
        return [_job(r) for r in rows]

    def startable_job(self, job_id: int) -> Job | None:
        """The job as :meth:`start_job` needs it, when it can start now (a queue message names only ids)."""
        rows = self.query(
            "SELECT * FROM jobs WHERE id=%s AND state = ANY(%s)", (job_id, list(STARTABLE_JOBS))
        )
        return _job(rows[0]) if rows else None

    def start_job(self, job: Job) -> JobRun | None:
        now = self.clock()
        with self._tx() as db:
            started = db.execute(
                "UPDATE jobs SET state=%s, attempts=attempts+1, worker=%s, updated_at=%s"
                " WHERE id=%s AND attempts=%s AND state = ANY(%s) RETURNING attempts",
                (JobState.PROCESSING, self.node, now, job.id, job.attempts, list(STARTABLE_JOBS)),
            ).fetchone()
            if started is None:
                return None
            rows = db.execute(
                "UPDATE instances SET state=%s, updated_at=%s WHERE job_id=%s AND state = ANY(%s)"
                " RETURNING id, spool_path, calling_ae, calling_ip",
                (InstanceState.PROCESSING, now, job.id, [InstanceState.GROUPED, InstanceState.PROCESSING]),
            ).fetchall()
        instances = tuple(
            JobInstance(int(r["id"]), r["spool_path"], r["calling_ae"], r["calling_ip"])
            for r in sorted(rows, key=lambda r: r["id"])
        )
        return JobRun(job.id, int(started["attempts"]), instances)

    def _fence_run(self, db: Any, run: JobRun, now: float) -> bool:
        row = db.execute(
            "UPDATE jobs SET updated_at=%s WHERE id=%s AND attempts=%s AND state=%s RETURNING id",
            (now, run.job_id, run.attempt, JobState.PROCESSING),
        ).fetchone()
        return row is not None

    def finish_job(self, run: JobRun, outcomes: Sequence[InstanceOutcome]) -> JobState | None:
        now = self.clock()
        with self._tx() as db:
            if not self._fence_run(db, run, now):
                return None
            for outcome in outcomes:
                self._apply_outcome(db, run.job_id, outcome, now)
            return self._settle_job(db, run.job_id, now)

    def _apply_outcome(self, db: Any, job_id: int, outcome: InstanceOutcome, now: float) -> None:
        where = " WHERE id=%s AND job_id=%s AND state=%s RETURNING calling_ae"
        fence = (outcome.instance_id, job_id, InstanceState.PROCESSING)
        if isinstance(outcome, Deidentified):
            db.execute(
                "UPDATE instances SET state=%s, updated_at=%s, destination=%s, out_path=%s, out_sop_uid=%s,"
                " attempts=0, next_attempt_at=NULL, first_failure_at=NULL, reason=''" + where,
                (
                    InstanceState.DEIDENTIFIED,
                    now,
                    outcome.destination,
                    outcome.out_path,
                    outcome.out_sop_uid,
                    *fence,
                ),
            )
            return
        state = InstanceState.DROPPED if isinstance(outcome, Dropped) else InstanceState.QUARANTINED
        row = db.execute(
            "UPDATE instances SET state=%s, updated_at=%s, reason=%s" + where,
            (state, now, outcome.reason, *fence),
        ).fetchone()
        if row is not None and state is InstanceState.QUARANTINED:
            self._quarantine_row(
                db,
                QuarantineKind.INSTANCE,
                outcome.instance_id,
                job_id,
                outcome.reason,
                row["calling_ae"],
                now=now,
            )

    @staticmethod
    def _settle_job(db: Any, job_id: int, now: float) -> JobState:
        states = [r["state"] for r in db.execute("SELECT state FROM instances WHERE job_id=%s", (job_id,))]
        current = JobState(db.execute("SELECT state FROM jobs WHERE id=%s", (job_id,)).fetchone()["state"])
        new = settled_job_state(states, current)
        if new is not current:
            db.execute("UPDATE jobs SET state=%s, updated_at=%s WHERE id=%s", (new, now, job_id))
        return new

    def retry_job(self, run: JobRun, reason: str, delay_s: float) -> bool:
        now = self.clock()
        with self._tx() as db:
            row = db.execute(
                "UPDATE jobs SET state=%s, reason=%s, next_attempt_at=%s, updated_at=%s"
                " WHERE id=%s AND attempts=%s AND state=%s RETURNING id",
                (
                    JobState.RETRY_WAITING,
                    reason,
                    now + delay_s,
                    now,
                    run.job_id,
                    run.attempt,
                    JobState.PROCESSING,
                ),
            ).fetchone()
            if row is None:
                return False
            db.execute(
                "UPDATE instances SET state=%s, updated_at=%s WHERE job_id=%s AND state=%s",
                (InstanceState.GROUPED, now, run.job_id, InstanceState.PROCESSING),
            )
            return True

    def quarantine_job(self, run: JobRun, reason: str) -> int | None:
        now = self.clock()
        with self._tx() as db:
            if not self._fence_run(db, run, now):
                return None
            rows = db.execute(
                "UPDATE instances SET state=%s, reason=%s, updated_at=%s WHERE job_id=%s AND state = ANY(%s)"
                " RETURNING id, calling_ae",
                (InstanceState.QUARANTINED, reason, now, run.job_id, list(UNFINISHED)),
            ).fetchall()
            for row in sorted(rows, key=lambda r: r["id"]):
                self._quarantine_row(
                    db, QuarantineKind.JOB, int(row["id"]), run.job_id, reason, row["calling_ae"], now=now
                )
            db.execute("UPDATE jobs SET reason=%s WHERE id=%s", (reason, run.job_id))
            self._settle_job(db, run.job_id, now)
            return len(rows)

    def running_job(self, job_id: int) -> JobRun | None:
        """The current run of a processing job (for the stalled-job sweep, which only knows the id)."""
        rows = self.query("SELECT attempts FROM jobs WHERE id=%s AND state=%s", (job_id, JobState.PROCESSING))
        return JobRun(job_id, int(rows[0]["attempts"]), ()) if rows else None

    # ---- forwarding ----------------------------------------------------------------------------------
    def due_outputs(self, limit: int = 500, exclude: Sequence[str] = ()) -> list[OutputItem]:
        """Lease the outputs due now to this node for ``lease_s``: rows another forwarder holds (row lock or
        unexpired lease) are skipped, so no item goes out from two nodes at the same time."""
        now = self.clock()
        with self._tx() as db:
            rows = db.execute(
                "UPDATE instances SET lease_owner=%s, lease_until=%s WHERE id IN ("
                " SELECT id FROM instances WHERE (state=%s OR (state=%s AND next_attempt_at<=%s))"
                " AND (lease_until IS NULL OR lease_until<%s) AND NOT (destination = ANY(%s))"
                " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING *",
                (
                    self.node,
                    now + self.lease_s,
                    InstanceState.DEIDENTIFIED,
                    InstanceState.RETRY_WAITING,
                    now,
                    now,
                    list(exclude),
                    limit,
                ),
            ).fetchall()
        return [_output(r) for r in sorted(rows, key=lambda r: r["id"])]

    def record_forwarding(self, outcomes: Sequence[ForwardOutcome]) -> list[ForwardRecorded]:
        now = self.clock()
        recorded: list[ForwardRecorded] = []
        with self._tx() as db:
            jobs: set[int] = set()
            for outcome in outcomes:
                done = self._apply_forward(db, outcome, now)
                if done is not None:
                    recorded.append(done)
                    jobs.add(outcome.item.job_id)
            for job_id in sorted(jobs):
                self._settle_job(db, job_id, now)
        return recorded

    def _apply_forward(self, db: Any, outcome: ForwardOutcome, now: float) -> ForwardRecorded | None:
        item = outcome.item
        where = " WHERE id=%s AND state = ANY(%s) AND attempts=%s RETURNING calling_ae, job_id"
        fence = (item.instance_id, list(FORWARDABLE), item.attempts)
        release = "lease_owner=NULL, lease_until=NULL"
        if isinstance(outcome, Forwarded):
            sql = f"UPDATE instances SET state=%s, updated_at=%s, forwarded_at=%s, reason='', {release}"
            row = db.execute(sql + where, (InstanceState.FORWARDED, now, now, *fence)).fetchone()
            return ForwardRecorded(item.instance_id) if row else None
        if isinstance(outcome, ForwardRetry):
            first = item.first_failure_at if item.first_failure_at is not None else now
            sql = (
                "UPDATE instances SET state=%s, updated_at=%s, reason=%s, attempts=attempts+1,"
                f" next_attempt_at=%s, first_failure_at=%s, {release}"
            )
            row = db.execute(
                sql + where,
                (InstanceState.RETRY_WAITING, now, outcome.reason, now + outcome.delay_s, first, *fence),
            ).fetchone()
            return ForwardRecorded(item.instance_id) if row else None
        assert isinstance(outcome, ForwardGaveUp)
        sql = f"UPDATE instances SET state=%s, updated_at=%s, reason=%s, {release}"
        row = db.execute(sql + where, (InstanceState.QUARANTINED, now, outcome.reason, *fence)).fetchone()
        if row is None:
            return None
        qid = self._quarantine_row(
            db,
            QuarantineKind.FORWARD,
            item.instance_id,
            row["job_id"],
            outcome.reason,
            row["calling_ae"],
            now=now,
        )
        return ForwardRecorded(item.instance_id, qid)

    # ---- maintenance ---------------------------------------------------------------------------------
    def recover(self) -> Recovery:
        """Single-node recovery (every processing job requeued). A cluster node never calls it: other nodes'
        jobs are running; the stalled-job sweep requeues only the jobs of workers that stopped."""
        now = self.clock()
        with self._tx() as db:
            jobs = db.execute(
                "UPDATE jobs SET state=%s, updated_at=%s WHERE state=%s",
                (JobState.GROUPED, now, JobState.PROCESSING),
            ).rowcount
            inst = db.execute(
                "UPDATE instances SET state=%s, updated_at=%s WHERE state=%s",
                (InstanceState.GROUPED, now, InstanceState.PROCESSING),
            ).rowcount
        return Recovery(jobs, inst)

    def purge_finished(self, before: float, limit: int = 1000) -> list[PurgedFiles]:
        with self._tx() as db:
            rows = self._purge_rows(db, before, limit)
            kept = {
                r["out_path"]
                for r in rows
                if r["out_path"]
                and db.execute(
                    "SELECT 1 FROM instances WHERE out_path=%s LIMIT 1", (r["out_path"],)
                ).fetchone()
            }
        return [PurgedFiles(r["spool_path"], "" if r["out_path"] in kept else r["out_path"]) for r in rows]

    @staticmethod
    def _purge_rows(db: Any, before: float, limit: int) -> list[dict[str, Any]]:
        rows = db.execute(
            "SELECT id, spool_path, COALESCE(out_path, '') AS out_path FROM instances"
            " WHERE state = ANY(%s) AND updated_at<%s AND spool_path<>'' ORDER BY id LIMIT %s"
            " FOR UPDATE SKIP LOCKED",
            ([InstanceState.FORWARDED, InstanceState.DROPPED], before, limit),
        ).fetchall()
        if rows:
            db.execute(
                "UPDATE instances SET spool_path='', out_path='' WHERE id = ANY(%s)",
                ([r["id"] for r in rows],),
            )
        return list(rows)

    def spool_paths(self) -> set[str]:
        return {r["spool_path"] for r in self.query("SELECT spool_path FROM instances WHERE spool_path<>''")}

    def spool_path_in_use(self, relpath: str) -> bool:
        return bool(self.query("SELECT 1 FROM instances WHERE spool_path=%s LIMIT 1", (relpath,)))

    def release_quarantine(self, item_id: int) -> InstanceState:
        now = self.clock()
        with self._tx() as db:
            item = db.execute(
                "SELECT * FROM quarantine WHERE id=%s AND released_at IS NULL FOR UPDATE", (item_id,)
            ).fetchone()
            if item is None or item["instance_id"] is None:
                raise LookupError("no releasable quarantine item with that id")
            if item["kind"] == QuarantineKind.FORWARD:
                db.execute(
                    "UPDATE instances SET state=%s, attempts=0, next_attempt_at=NULL, first_failure_at=NULL,"
                    " reason='', lease_owner=NULL, lease_until=NULL, updated_at=%s WHERE id=%s",
                    (InstanceState.DEIDENTIFIED, now, item["instance_id"]),
                )
                db.execute("UPDATE jobs SET state=%s WHERE id=%s", (JobState.DEIDENTIFIED, item["job_id"]))
                new_state = InstanceState.DEIDENTIFIED
            else:
                db.execute(
                    "UPDATE instances SET state=%s, job_id=NULL, reason='', received_at=%s, updated_at=%s"
                    " WHERE id=%s",
                    (InstanceState.RECEIVED, now, now, item["instance_id"]),
                )
                new_state = InstanceState.RECEIVED
            db.execute("UPDATE quarantine SET released_at=%s WHERE id=%s", (now, item_id))
            return new_state

    # ---- nodes (status, doctor) ----------------------------------------------------------------------
    def heartbeat_node(self, role: str, started_at: float) -> None:
        now = self.clock()
        with self._tx() as db:
            db.execute(
                "INSERT INTO nodes (name, role, pid, started_at, heartbeat_at) VALUES (%s,%s,%s,%s,%s)"
                " ON CONFLICT (name) DO UPDATE SET role=EXCLUDED.role, heartbeat_at=EXCLUDED.heartbeat_at",
                (self.node, role, os.getpid(), started_at, now),
            )

    def nodes(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM nodes ORDER BY name")

    # ---- reads ---------------------------------------------------------------------------------------
    def counts(self) -> LedgerCounts:
        out: dict[str, dict[str, StateCount]] = {}
        for table in ("instances", "jobs"):
            rows = self.query(
                f"SELECT state, COUNT(*) AS n, MIN(updated_at) AS oldest FROM {table} GROUP BY state"
            )
            out[table] = {r["state"]: StateCount(int(r["n"]), r["oldest"]) for r in rows}
        return LedgerCounts(
            instances={InstanceState(k): v for k, v in out["instances"].items()},
            jobs={JobState(k): v for k, v in out["jobs"].items()},
        )

    def quarantine_items(self, include_released: bool = False) -> list[QuarantineItem]:
        where = "" if include_released else " WHERE released_at IS NULL"
        return [_quarantine(r) for r in self.query(f"SELECT * FROM quarantine{where} ORDER BY id")]

    def quarantine_item(self, item_id: int) -> QuarantineItem | None:
        rows = self.query("SELECT * FROM quarantine WHERE id=%s", (item_id,))
        return _quarantine(rows[0]) if rows else None

    def instance(self, instance_id: int) -> InstanceRecord | None:
        rows = self.query("SELECT * FROM instances WHERE id=%s", (instance_id,))
        return _instance(rows[0]) if rows else None

    def instances(
        self, state: InstanceState | None = None, study_key: str | None = None, limit: int = 10_000
    ) -> list[InstanceRecord]:
        rows = self.query(
            "SELECT * FROM instances WHERE (%s::text IS NULL OR state=%s)"
            " AND (%s::text IS NULL OR study_key=%s) ORDER BY id LIMIT %s",
            (state, state, study_key, study_key, limit),
        )
        return [_instance(r) for r in rows]

    def jobs(self, study_key: str | None = None, limit: int = 10_000) -> list[JobRecord]:
        rows = self.query(
            "SELECT * FROM jobs WHERE (%s::text IS NULL OR study_key=%s) ORDER BY id LIMIT %s",
            (study_key, study_key, limit),
        )
        return [_job_record(r) for r in rows]

    def studies(self, limit: int = 100, offset: int = 0) -> list[StudySummary]:
        rows = self.query(
            "SELECT study_key, MIN(patient_key) AS patient_key, COUNT(*) AS instances,"
            " COUNT(DISTINCT job_id) AS jobs, MIN(received_at) AS first_at, MAX(updated_at) AS last_at"
            " FROM instances GROUP BY study_key"
            " ORDER BY MAX(updated_at) DESC LIMIT %s OFFSET %s",
            (limit, offset),
        )
        keys = [r["study_key"] for r in rows]
        per_state = self.query(
            "SELECT study_key, state, COUNT(*) AS n FROM instances WHERE study_key = ANY(%s)"
            " GROUP BY study_key, state",
            (keys,),
        )
        states: dict[str, dict[InstanceState, int]] = {k: {} for k in keys}
        for r in per_state:
            states[r["study_key"]][InstanceState(r["state"])] = int(r["n"])
        return [
            StudySummary(
                r["study_key"],
                r["patient_key"],
                int(r["instances"]),
                int(r["jobs"]),
                r["first_at"],
                r["last_at"],
                states[r["study_key"]],
            )
            for r in rows
        ]


def _tuple_row() -> Any:
    from psycopg.rows import tuple_row

    return tuple_row


def _job(r: dict[str, Any]) -> Job:
    return Job(
        int(r["id"]),
        r["study_key"],
        r["patient_key"],
        JobState(r["state"]),
        r["follow_up_of"],
        int(r["attempts"]),
    )


def _output(r: dict[str, Any]) -> OutputItem:
    return OutputItem(
        int(r["id"]),
        int(r["job_id"]),
        r["destination"],
        r["out_path"],
        r["out_sop_uid"],
        int(r["attempts"]),
        r["first_failure_at"],
    )


def _instance(r: dict[str, Any]) -> InstanceRecord:
    values = {k: r[k] for k in INSTANCE_FIELDS}
    values["state"] = InstanceState(values["state"])
    return InstanceRecord(**values)


def _job_record(r: dict[str, Any]) -> JobRecord:
    values = {k: r[k] for k in JOB_FIELDS}
    values["state"] = JobState(values["state"])
    return JobRecord(**values)


def _quarantine(r: dict[str, Any]) -> QuarantineItem:
    values = {k: r[k] for k in QUARANTINE_FIELDS}
    values["kind"] = QuarantineKind(values["kind"])
    return QuarantineItem(**values)
