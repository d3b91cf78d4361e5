"""The ledger's transitions in portable SQL over any DB-API 2 driver (the statements: :mod:`.statements`).

A backend subclasses :class:`SqlLedger` and supplies connections: :meth:`SqlLedger._write` (one
serialised transaction) and :meth:`SqlLedger._read` (autocommit reads), each yielding a :class:`Tx`.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from enum import Enum
from typing import Any, TypeVar

from gateway.core.ledger import statements as sql
from gateway.core.ledger.base import Ledger
from gateway.core.ledger.models import (
    FORWARDABLE,
    STARTABLE_JOBS,
    UNFINISHED,
    Deidentified,
    Dropped,
    Duplicate,
    Forwarded,
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

Row = dict[str, Any]
R = TypeVar("R")


def _plain(args: Sequence[Any]) -> tuple[Any, ...]:
    """State enums go to the driver as their text (a driver may adapt an Enum by its name)."""
    return tuple(a.value if isinstance(a, Enum) else a for a in args)


class Tx:
    """Statements on one DB-API cursor; rows come back as dicts. ``convert`` adapts the ``?`` style."""

    def __init__(self, cursor: Any, convert: Callable[[str], str] = lambda s: s) -> None:
        self.cursor = cursor
        self.convert = convert

    def rows(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        self.cursor.execute(self.convert(statement), _plain(args))
        names = [d[0] for d in self.cursor.description]
        return [dict(zip(names, r, strict=True)) for r in self.cursor.fetchall()]

    def one(self, statement: str, args: Sequence[Any] = ()) -> Row | None:
        found = self.rows(statement, args)
        return found[0] if found else None

    def run(self, statement: str, args: Sequence[Any] = ()) -> int:
        """Execute; returns how many rows it changed (0: a fence did not hold)."""
        self.cursor.execute(self.convert(statement), _plain(args))
        return int(self.cursor.rowcount)

    def insert(self, statement: str, args: Sequence[Any]) -> int:
        """An ``INSERT ... RETURNING id``; returns the new id."""
        return int(self.rows(statement, args)[0]["id"])


def _record(cls: type[R], row: Row, **enums: Callable[[Any], Any]) -> R:
    """A frozen record from a row (by field name); ``enums`` convert state and kind columns."""
    values = {f.name: row[f.name] for f in fields(cls)}  # type: ignore[arg-type]
    for name, convert in enums.items():
        values[name] = convert(values[name])
    return cls(**values)


class SqlLedger(Ledger):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    @abstractmethod
    def _write(self) -> AbstractContextManager[Tx]:
        """One transaction, serialised against other writers, committed when the block ends."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Tx]:
        """Reads outside a write transaction."""

    # ---- receive -------------------------------------------------------------------------------------
    def record_received(self, item: ReceivedInstance) -> ReceiveResult:
        now = self.clock()
        with self._write() as tx:
            return self._receive(tx, item, now)

    def record_received_many(self, items: Sequence[ReceivedInstance]) -> list[ReceiveResult]:
        """One transaction for all (the group commit of :mod:`gateway.core.ledger.group`): one BEGIN/COMMIT
        and one write-lock hold for the batch; on SQLite each changed page goes to the WAL once, on
        PostgreSQL one commit flush. A failure fails the batch: the group commit then records row by row
        (through :meth:`record_received`, a backend's own retries included)."""
        now = self.clock()
        with self._write() as tx:
            return [self._receive(tx, item, now) for item in items]

    def _receive(self, tx: Tx, item: ReceivedInstance, now: float) -> ReceiveResult:
        versions = tx.rows(sql.SOP_VERSIONS, (item.sop_key,))
        for row in versions:
            if row["sha256"] == item.sha256:
                return ReceiveResult(int(row["id"]), Duplicate.SAME_BYTES)
        instance_id = self._insert_instance(tx, item, versions, now)
        return ReceiveResult(instance_id, Duplicate.DIFFERENT_BYTES if versions else Duplicate.NO)

    @staticmethod
    def _insert_instance(tx: Tx, item: ReceivedInstance, versions: list[Row], now: float) -> int:
        """A received row; a SOP seen before with other bytes points at its first version."""
        first = versions[0]["id"] if versions else None
        return tx.insert(
            sql.INSERT_INSTANCE,
            (
                item.sop_key, item.study_key, item.patient_key, item.sop_class_uid, item.transfer_syntax,
                item.sha256, item.spool_path, item.size, item.calling_ae, item.calling_ip,
                InstanceState.RECEIVED, first, now, now,
            ),
        )  # fmt: skip

    def record_recovered(self, item: ReceivedInstance, reason: str) -> int | None:
        now = self.clock()
        with self._write() as tx:
            versions = tx.rows(sql.SOP_VERSIONS, (item.sop_key,))
            if any(row["sha256"] == item.sha256 for row in versions):
                return None
            instance_id = self._insert_instance(tx, item, versions, now)
            tx.run(sql.QUARANTINE_INSTANCE, (InstanceState.QUARANTINED, reason, now, instance_id))
            return self._quarantine_record(tx, QuarantineKind.INSTANCE, instance_id, reason, now)

    def quarantine_received(self, reason: str, blob_path: str | None, calling_ae: str) -> int:
        with self._write() as tx:
            return tx.insert(
                sql.INSERT_QUARANTINE,
                (QuarantineKind.RECEIVE, None, None, reason, blob_path, calling_ae, self.clock()),
            )

    # ---- grouping and jobs ---------------------------------------------------------------------------
    def group_received(self) -> list[Grouped]:
        now = self.clock()
        grouped: list[Grouped] = []
        with self._write() as tx:
            for row in tx.rows(sql.RECEIVED, (InstanceState.RECEIVED,)):
                job_id = self._collecting_job(tx, row["study_key"], row["patient_key"], now)
                tx.run(sql.EXTEND_JOB, (row["received_at"], row["received_at"], now, job_id))
                if tx.run(
                    sql.GROUP_INSTANCE,
                    (InstanceState.GROUPED, job_id, now, row["id"], InstanceState.RECEIVED),
                ):
                    grouped.append(Grouped(int(row["id"]), job_id))
        return grouped

    @staticmethod
    def _collecting_job(tx: Tx, study_key: str, patient_key: str, now: float) -> int:
        row = tx.one(sql.COLLECTING_JOB, (study_key, JobState.GROUPED))
        if row is not None:
            return int(row["id"])
        last = tx.one(sql.LAST_JOB_OF_STUDY, (study_key,))
        follow_up_of = last["id"] if last else None
        return tx.insert(
            sql.INSERT_JOB, (study_key, patient_key, JobState.GROUPED, follow_up_of, now, now, now, now)
        )

    def ready_jobs(self, quiet_s: float, max_wait_s: float, limit: int = 100) -> list[Job]:
        now = self.clock()
        args = (JobState.GROUPED, now - quiet_s, now - max_wait_s, JobState.RETRY_WAITING, now, limit)
        with self._read() as tx:
            return [_record(Job, r, state=JobState) for r in tx.rows(sql.READY_JOBS, args)]

    def start_job(self, job: Job) -> JobRun | None:
        now = self.clock()
        with self._write() as tx:
            if not tx.run(sql.START_JOB, (JobState.PROCESSING, now, job.id, *STARTABLE_JOBS, job.attempts)):
                return None
            started = (InstanceState.PROCESSING, now, job.id, InstanceState.GROUPED, InstanceState.PROCESSING)
            tx.run(sql.START_JOB_INSTANCES, started)
            rows = tx.rows(sql.JOB_INSTANCES, (job.id, InstanceState.PROCESSING))
        return JobRun(job.id, job.attempts + 1, tuple(_record(JobInstance, r) for r in rows))

    def finish_job(self, run: JobRun, outcomes: Sequence[InstanceOutcome]) -> JobState | None:
        now = self.clock()
        with self._write() as tx:
            if not self._fence_run(tx, run, now):
                return None
            for outcome in outcomes:
                self._apply_outcome(tx, run.job_id, outcome, now)
            return self._settle(tx, run.job_id, now)

    def _apply_outcome(self, tx: Tx, job_id: int, outcome: InstanceOutcome, now: float) -> None:
        processing = InstanceState.PROCESSING
        if isinstance(outcome, Deidentified):
            args = (outcome.destination, outcome.out_path, outcome.out_sop_uid, now, outcome.instance_id)
            tx.run(sql.FINISH_DEIDENTIFIED, (InstanceState.DEIDENTIFIED, *args, job_id, processing))
            return
        state = InstanceState.DROPPED if isinstance(outcome, Dropped) else InstanceState.QUARANTINED
        applied = tx.run(
            sql.FINISH_WITH_REASON, (state, outcome.reason, now, outcome.instance_id, job_id, processing)
        )
        if applied and state is InstanceState.QUARANTINED:
            self._quarantine_record(tx, QuarantineKind.INSTANCE, outcome.instance_id, outcome.reason, now)

    @staticmethod
    def _fence_run(tx: Tx, run: JobRun, now: float) -> bool:
        return tx.run(sql.FENCE_RUN, (now, run.job_id, JobState.PROCESSING, run.attempt)) == 1

    @staticmethod
    def _quarantine_record(tx: Tx, kind: QuarantineKind, instance_id: int, reason: str, now: float) -> int:
        origin = tx.one(sql.INSTANCE_ORIGIN, (instance_id,)) or {"job_id": None, "calling_ae": ""}
        args = (kind, instance_id, origin["job_id"], reason, None, origin["calling_ae"], now)
        return tx.insert(sql.INSERT_QUARANTINE, args)

    @staticmethod
    def _settle(tx: Tx, job_id: int, now: float) -> JobState:
        states = [r["state"] for r in tx.rows(sql.STATES_OF_JOB, (job_id,))]
        current = JobState(tx.rows(sql.JOB_STATE, (job_id,))[0]["state"])
        if set(states) & set(UNFINISHED):
            return current
        settled = settled_job_state(states, current)
        tx.run(sql.SET_JOB_STATE, (settled, now, job_id))
        return settled

    def retry_job(self, run: JobRun, reason: str, delay_s: float) -> bool:
        now = self.clock()
        fence = (run.job_id, JobState.PROCESSING, run.attempt)
        with self._write() as tx:
            if not tx.run(sql.RETRY_JOB, (JobState.RETRY_WAITING, reason, now + delay_s, now, *fence)):
                return False
            regroup = (InstanceState.GROUPED, now, run.job_id, InstanceState.PROCESSING)
            tx.run(sql.REGROUP_JOB_INSTANCES, regroup)
        return True

    def quarantine_job(self, run: JobRun, reason: str) -> int | None:
        now = self.clock()
        with self._write() as tx:
            if not self._fence_run(tx, run, now):
                return None
            unfinished = tx.rows(sql.UNFINISHED_OF_JOB, (run.job_id, *UNFINISHED))
            for row in unfinished:
                tx.run(sql.QUARANTINE_INSTANCE, (InstanceState.QUARANTINED, reason, now, row["id"]))
                self._quarantine_record(tx, QuarantineKind.JOB, int(row["id"]), reason, now)
            self._settle(tx, run.job_id, now)
        return len(unfinished)

    # ---- forwarding ----------------------------------------------------------------------------------
    def due_outputs(self, limit: int = 500, exclude: Sequence[str] = ()) -> list[OutputItem]:
        skip = f" AND destination NOT IN ({sql.params(len(exclude))})" if exclude else ""
        args = (InstanceState.DEIDENTIFIED, InstanceState.RETRY_WAITING, self.clock(), *exclude, limit)
        with self._read() as tx:
            rows = tx.rows(sql.DUE_OUTPUTS.format(skip=skip), args)
        return [_record(OutputItem, {"instance_id": r["id"], **r}) for r in rows]

    def record_forwarding(self, outcomes: Sequence[ForwardOutcome]) -> list[ForwardRecorded]:
        now = self.clock()
        recorded: list[ForwardRecorded] = []
        with self._write() as tx:
            for outcome in outcomes:
                applied = self._apply_forward(tx, outcome, now)
                if applied is not None:
                    recorded.append(applied)
            for job_id in sorted({o.item.job_id for o in outcomes}):
                self._settle(tx, job_id, now)
        return recorded

    def _apply_forward(self, tx: Tx, outcome: ForwardOutcome, now: float) -> ForwardRecorded | None:
        item = outcome.item
        fence = (item.instance_id, *FORWARDABLE, item.attempts)
        if isinstance(outcome, Forwarded):
            applied = tx.run(sql.FORWARDED, (InstanceState.FORWARDED, now, now, *fence))
            return ForwardRecorded(item.instance_id) if applied else None
        if isinstance(outcome, ForwardRetry):
            retry = (InstanceState.RETRY_WAITING, outcome.reason, now + outcome.delay_s, now, now)
            return ForwardRecorded(item.instance_id) if tx.run(sql.FORWARD_RETRY, (*retry, *fence)) else None
        if not tx.run(sql.FORWARD_GAVE_UP, (InstanceState.QUARANTINED, outcome.reason, now, *fence)):
            return None
        qid = self._quarantine_record(tx, QuarantineKind.FORWARD, item.instance_id, outcome.reason, now)
        return ForwardRecorded(item.instance_id, qid)

    # ---- maintenance ---------------------------------------------------------------------------------
    def recover(self) -> Recovery:
        now = self.clock()
        with self._write() as tx:
            jobs = tx.run(sql.REQUEUE_JOBS, (JobState.GROUPED, now, JobState.PROCESSING))
            instances = tx.run(sql.REQUEUE_INSTANCES, (InstanceState.GROUPED, now, InstanceState.PROCESSING))
        return Recovery(jobs, instances)

    def purge_finished(self, before: float, limit: int = 1000) -> list[PurgedFiles]:
        finished = (InstanceState.FORWARDED, InstanceState.DROPPED, before, limit)
        with self._write() as tx:
            rows = tx.rows(sql.PURGEABLE, finished)
            for row in rows:
                tx.run(sql.FORGET_FILES, (row["id"],))
            # identical outputs share one content-addressed file: keep it while another row still needs it
            kept = {
                r["out_path"] for r in rows if r["out_path"] and tx.one(sql.OUT_PATH_IN_USE, (r["out_path"],))
            }
        return [PurgedFiles(r["spool_path"], "" if r["out_path"] in kept else r["out_path"]) for r in rows]

    def spool_paths(self) -> set[str]:
        with self._read() as tx:
            return {r["spool_path"] for r in tx.rows(sql.SPOOL_PATHS)}

    def spool_path_in_use(self, relpath: str) -> bool:
        with self._read() as tx:
            return tx.one(sql.SPOOL_PATH_IN_USE, (relpath,)) is not None

    def release_quarantine(self, item_id: int) -> InstanceState:
        now = self.clock()
        with self._write() as tx:
            item = tx.one(sql.OPEN_QUARANTINE_ITEM, (item_id,))
            if item is None or item["instance_id"] is None:
                raise LookupError("no releasable quarantine item with that id")
            if item["kind"] == QuarantineKind.FORWARD:
                new_state = InstanceState.DEIDENTIFIED
                args = (new_state, now, item["instance_id"], InstanceState.QUARANTINED)
                applied = tx.run(sql.REFORWARD_INSTANCE, args)
                tx.run(sql.REFORWARD_JOB, (JobState.DEIDENTIFIED, now, item["job_id"]))
            else:
                new_state = InstanceState.RECEIVED
                args = (new_state, now, now, item["instance_id"], InstanceState.QUARANTINED)
                applied = tx.run(sql.RERECEIVE_INSTANCE, args)
            if not applied:
                raise LookupError("the instance of that quarantine item is no longer quarantined")
            tx.run(sql.RELEASE_QUARANTINE, (now, item_id))
        return new_state

    # ---- reads ---------------------------------------------------------------------------------------
    def counts(self) -> LedgerCounts:
        with self._read() as tx:
            instances = tx.rows(sql.COUNTS["instances"])
            jobs = tx.rows(sql.COUNTS["jobs"])
        return LedgerCounts(
            {InstanceState(r["state"]): StateCount(int(r["n"]), r["oldest"]) for r in instances},
            {JobState(r["state"]): StateCount(int(r["n"]), r["oldest"]) for r in jobs},
        )

    def quarantine_items(self, include_released: bool = False) -> list[QuarantineItem]:
        where = "" if include_released else " WHERE released_at IS NULL"
        with self._read() as tx:
            rows = tx.rows(sql.QUARANTINE_ITEMS.format(where=where))
        return [_record(QuarantineItem, r, kind=QuarantineKind) for r in rows]

    def quarantine_item(self, item_id: int) -> QuarantineItem | None:
        with self._read() as tx:
            row = tx.one(sql.QUARANTINE_ITEMS.format(where=" WHERE id=?"), (item_id,))
        return _record(QuarantineItem, row, kind=QuarantineKind) if row else None

    def instance(self, instance_id: int) -> InstanceRecord | None:
        found = self._instances({"id": instance_id}, 1)
        return found[0] if found else None

    def instances(
        self, state: InstanceState | None = None, study_key: str | None = None, limit: int = 10_000
    ) -> list[InstanceRecord]:
        return self._instances({"state": state, "study_key": study_key}, limit)

    def _instances(self, filters: dict[str, Any], limit: int) -> list[InstanceRecord]:
        where, args = _where(filters)
        with self._read() as tx:
            rows = tx.rows(sql.INSTANCES.format(where=where), (*args, limit))
        return [_record(InstanceRecord, r, state=InstanceState) for r in rows]

    def jobs(self, study_key: str | None = None, limit: int = 10_000) -> list[JobRecord]:
        where, args = _where({"study_key": study_key})
        with self._read() as tx:
            rows = tx.rows(sql.JOBS.format(where=where), (*args, limit))
        return [_record(JobRecord, r, state=JobState) for r in rows]

    def studies(self, limit: int = 100, offset: int = 0) -> list[StudySummary]:
        with self._read() as tx:
            rows = tx.rows(sql.STUDIES, (limit, offset))
            keys = [r["study_key"] for r in rows]
            per_state = tx.rows(sql.STUDY_STATES.format(keys=sql.params(len(keys))), keys) if keys else []
        states: dict[str, dict[InstanceState, int]] = {k: {} for k in keys}
        for r in per_state:
            states[r["study_key"]][InstanceState(r["state"])] = int(r["n"])
        return [StudySummary(**r, states=states[r["study_key"]]) for r in rows]


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE a=? AND b=?`` for the filters that are set."""
    used = [(column, value) for column, value in filters.items() if value is not None]
    clause = " AND ".join(f"{column}=?" for column, _ in used)
    return (f" WHERE {clause}" if clause else ""), [value for _, value in used]
