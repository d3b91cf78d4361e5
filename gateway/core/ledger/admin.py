"""The ledger's admin block: state-change trail, per-instance processing details, the audit log, and the read
queries behind ``vera-gateway status|studies|quarantine|audit`` and the web console.

A separate block of the ledger package (the transitions stay in :mod:`.sql`), over the backend's own
transactions (``_read``/``_write`` yielding a :class:`~.sql.Tx`). The trail is written by SQLite triggers on
``instances``, so every transition is recorded in its own transaction without the state machine knowing; a
backend without :data:`SQLITE_TRAIL_TRIGGERS` (PostgreSQL needs its own trigger function) shows current
states only. Everything stored is a ledger id, a keyed hash, a pseudonym, a state or a reason, never
patient data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.ledger.models import InstanceState, JobState, settled_job_state
from gateway.core.ledger.sql import Row, Tx

# Created by AdminLedger (idempotent); the scheduler builds one at service start, so the trail is
# recorded whether or not the console runs. ``{id}``: the backend's auto-increment primary key.
ADMIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS instance_events (
    id {id},
    instance_id INTEGER NOT NULL, job_id INTEGER, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_events_instance ON instance_events (instance_id);
CREATE INDEX IF NOT EXISTS instance_events_at ON instance_events (at);
CREATE TABLE IF NOT EXISTS instance_details (
    instance_id BIGINT PRIMARY KEY, job_id BIGINT, route TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{{}}'
);
CREATE INDEX IF NOT EXISTS instance_details_route ON instance_details (route);
CREATE TABLE IF NOT EXISTS audit (
    id {id},
    at DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL DEFAULT ''
);
"""
_TRAIL_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS instance_events_{name} AFTER {event} ON instances {when}BEGIN
    INSERT INTO instance_events (instance_id, job_id, state, reason, at)
    VALUES (NEW.id, NEW.job_id, NEW.state, NEW.reason, NEW.updated_at);
END"""
SQLITE_TRAIL_TRIGGERS = (
    _TRAIL_TRIGGER.format(name="insert", event="INSERT", when=""),
    _TRAIL_TRIGGER.format(name="update", event="UPDATE OF state", when="WHEN NEW.state IS NOT OLD.state "),
)


class LedgerLike(Protocol):
    """What this block needs of a :class:`~.sql.SqlLedger` backend: its clock and transactions."""

    clock: Callable[[], float]

    def _read(self) -> AbstractContextManager[Tx]: ...
    def _write(self) -> AbstractContextManager[Tx]: ...


@dataclass(frozen=True)
class StateTally:
    state: str
    count: int
    oldest: float | None  # oldest updated_at in that state


@dataclass(frozen=True)
class JobRow:
    id: int
    study_key: str
    patient_key: str
    state: str
    reason: str
    follow_up_of: int | None
    instances: int
    routes: str
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class InstanceRow:
    id: int
    job_id: int | None
    sop_key: str
    sop_class_uid: str
    transfer_syntax: str
    size: int
    sha256: str
    state: str
    reason: str
    destination: str
    attempts: int
    received_at: float
    updated_at: float
    forwarded_at: float | None
    out_uid_hash: str  # a hash of the output SOP Instance UID (the output UID is new, but still not shown)
    detail: dict[str, Any]
    spool_path: str = ""  # the received file under the spool (named by its sha256; '' once retention ran)


@dataclass(frozen=True)
class StateEvent:
    instance_id: int
    job_id: int | None
    state: str
    reason: str
    at: float


@dataclass(frozen=True)
class QuarantineRow:
    id: int
    kind: str
    instance_id: int | None
    job_id: int | None
    reason: str
    calling_ae: str
    created_at: float
    released_at: float | None
    instance_state: str
    blob_path: str = ""  # a receive-time item's bytes under the quarantine folder


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: float
    actor: str
    action: str
    target: str
    reason: str
    outcome: str


@dataclass(frozen=True)
class DestinationRow:
    destination: str
    forwarded: int
    backlog: int
    retrying: int
    last_success: float | None
    last_error: str
    last_error_at: float | None


@dataclass(frozen=True)
class JobQuery:
    """Study search: any field left empty matches everything."""

    text: str = ""  # job id, or a prefix of the patient pseudonym or of the study key
    state: str = ""
    route: str = ""
    since: float | None = None
    until: float | None = None
    limit: int = 100


def _out_hash(uid: str | None) -> str:
    from hashlib import sha256

    return sha256(uid.encode()).hexdigest()[:12] if uid else ""


class AdminLedger:
    """Typed reads and the audit log over the ledger's connection (thread-safe like the ledger)."""

    def __init__(self, ledger: LedgerLike) -> None:
        self.ledger = ledger
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        from gateway.core.ledger.sqlite import PRIMARY_KEY, SqliteLedger

        sqlite = isinstance(self.ledger, SqliteLedger)
        ddl = ADMIN_SCHEMA.format(
            id=PRIMARY_KEY if sqlite else "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        )
        statements = [s.strip() for s in ddl.split(";") if s.strip()]
        with self.ledger._write() as tx:
            for statement in [*statements, *(SQLITE_TRAIL_TRIGGERS if sqlite else ())]:
                tx.run(statement)

    def _rows(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        with self.ledger._read() as tx:
            return tx.rows(statement, args)

    # ---- status ----------------------------------------------------------------------------------------
    def state_counts(self, table: str) -> list[StateTally]:
        if table not in ("instances", "jobs"):
            raise ValueError(table)
        rows = self._rows(
            f"SELECT state, COUNT(*) AS n, MIN(updated_at) AS oldest FROM {table}"
            " GROUP BY state ORDER BY state"
        )
        return [StateTally(r["state"], int(r["n"]), r["oldest"]) for r in rows]

    def transition_buckets(self, state: str, start: float, size_s: float, buckets: int) -> list[int]:
        """Transitions into ``state`` per ``size_s`` bucket from ``start`` (the charts), counted in SQL."""
        rows = self._rows(
            "SELECT CAST((at - ?) / ? AS INTEGER) AS bucket, COUNT(*) AS n FROM instance_events"
            " WHERE state=? AND at>=? AND at<? GROUP BY 1",  # by position: PostgreSQL would not match
            (start, size_s, state, start, start + size_s * buckets),  # the repeated parameters as one
        )
        counts = [0] * buckets
        for r in rows:
            counts[min(buckets - 1, max(0, int(r["bucket"])))] += int(r["n"])
        return counts

    def open_quarantine_count(self) -> int:
        rows = self._rows("SELECT COUNT(*) AS n FROM quarantine WHERE released_at IS NULL")
        return int(rows[0]["n"])

    def destinations(self) -> list[DestinationRow]:
        rows = self._rows(
            "SELECT destination,"
            " SUM(CASE WHEN state='forwarded' THEN 1 ELSE 0 END) AS forwarded,"  # CASE: portable
            " SUM(CASE WHEN state IN ('deidentified','retry_waiting') THEN 1 ELSE 0 END) AS backlog,"
            " SUM(CASE WHEN state='retry_waiting' THEN 1 ELSE 0 END) AS retrying,"
            " MAX(forwarded_at) AS last_success"
            " FROM instances WHERE destination IS NOT NULL AND destination<>'' GROUP BY destination"
            " ORDER BY destination"
        )
        out = []
        for r in rows:
            err = self._rows(
                "SELECT reason, updated_at FROM instances WHERE destination=? AND state IN"
                " ('retry_waiting','quarantined') AND reason<>'' ORDER BY updated_at DESC LIMIT 1",
                (r["destination"],),
            )
            out.append(
                DestinationRow(
                    r["destination"],
                    int(r["forwarded"] or 0),
                    int(r["backlog"] or 0),
                    int(r["retrying"] or 0),
                    r["last_success"],
                    err[0]["reason"] if err else "",
                    err[0]["updated_at"] if err else None,
                )
            )
        return out

    # ---- studies ---------------------------------------------------------------------------------------
    def jobs(self, q: JobQuery) -> list[JobRow]:
        where, params = ["1=1"], []
        text = q.text.strip()
        if text.isdigit():
            where.append("j.id=?")
            params.append(int(text))
        elif text:
            where.append("(j.patient_key LIKE ? ESCAPE '\\' OR j.study_key LIKE ? ESCAPE '\\')")
            params += [_prefix(text), _prefix(text)]
        if q.state:
            where.append("j.state=?")
            params.append(q.state)
        if q.route:
            where.append("EXISTS (SELECT 1 FROM instance_details d WHERE d.job_id=j.id AND d.route=?)")
            params.append(q.route)
        if q.since is not None:
            where.append("j.updated_at>=?")
            params.append(q.since)
        if q.until is not None:
            where.append("j.created_at<=?")
            params.append(q.until)
        rows = self._rows(
            "SELECT j.*, (SELECT COUNT(*) FROM instances i WHERE i.job_id=j.id) AS n,"
            " (SELECT GROUP_CONCAT(DISTINCT d.route) FROM instance_details d WHERE d.job_id=j.id) AS routes"
            f" FROM jobs j WHERE {' AND '.join(where)} ORDER BY j.id DESC LIMIT ?",
            (*params, q.limit),
        )
        return [_job_row(r) for r in rows]

    def job(self, job_id: int) -> JobRow | None:
        rows = self.jobs(JobQuery(text=str(job_id), limit=1))
        return rows[0] if rows else None

    def study_jobs(self, study_key: str) -> list[JobRow]:
        """Every job of one study (the first and its follow-ups), oldest first."""
        rows = self._rows(
            "SELECT j.*, (SELECT COUNT(*) FROM instances i WHERE i.job_id=j.id) AS n,"
            " (SELECT GROUP_CONCAT(DISTINCT d.route) FROM instance_details d WHERE d.job_id=j.id) AS routes"
            " FROM jobs j WHERE j.study_key=? ORDER BY j.id",
            (study_key,),
        )
        return [_job_row(r) for r in rows]

    def job_instances(self, job_id: int) -> list[InstanceRow]:
        """Instances now in the job, plus those that were in it before a replay moved them on."""
        rows = self._rows(
            "SELECT i.*, d.detail FROM instances i LEFT JOIN instance_details d ON d.instance_id=i.id"
            " WHERE i.job_id=? OR i.id IN (SELECT instance_id FROM instance_events WHERE job_id=?)"
            " ORDER BY i.id",
            (job_id, job_id),
        )
        return [_instance_row(r) for r in rows]

    def instance(self, instance_id: int) -> InstanceRow | None:
        rows = self._rows(
            "SELECT i.*, d.detail FROM instances i LEFT JOIN instance_details d ON d.instance_id=i.id"
            " WHERE i.id=?",
            (instance_id,),
        )
        return _instance_row(rows[0]) if rows else None

    def events(self, instance_ids: Sequence[int]) -> list[StateEvent]:
        if not instance_ids:
            return []
        marks = ",".join("?" * len(instance_ids))
        rows = self._rows(
            f"SELECT * FROM instance_events WHERE instance_id IN ({marks}) ORDER BY instance_id, id",
            tuple(instance_ids),
        )
        return [StateEvent(r["instance_id"], r["job_id"], r["state"], r["reason"], r["at"]) for r in rows]

    def record_details(self, details: Sequence[tuple[int, int, str, dict[str, Any]]]) -> None:
        """(instance_id, job_id, route, detail) from a finished job: route, pixel plan, verification."""
        with self.ledger._write() as tx:
            for iid, jid, route, detail in details:
                tx.run(
                    "INSERT INTO instance_details (instance_id, job_id, route, detail) VALUES (?,?,?,?)"
                    " ON CONFLICT (instance_id) DO UPDATE SET job_id=excluded.job_id, route=excluded.route,"
                    " detail=excluded.detail",
                    (iid, jid, route, json.dumps(detail, sort_keys=True)),
                )

    def routes(self) -> list[str]:
        return [r["route"] for r in self._rows("SELECT DISTINCT route FROM instance_details ORDER BY 1")]

    # ---- quarantine ------------------------------------------------------------------------------------
    def quarantine(
        self, *, include_released: bool = False, kind: str = "", text: str = "", limit: int = 500
    ) -> list[QuarantineRow]:
        where, params = ["1=1"], []
        if not include_released:
            where.append("q.released_at IS NULL")
        if kind:
            where.append("q.kind=?")
            params.append(kind)
        if text:
            where.append("q.reason LIKE ? ESCAPE '\\'")
            params.append(f"%{_escape_like(text)}%")
        rows = self._rows(
            "SELECT q.*, COALESCE(i.state, '') AS instance_state FROM quarantine q"
            f" LEFT JOIN instances i ON i.id=q.instance_id WHERE {' AND '.join(where)} ORDER BY q.id LIMIT ?",
            (*params, limit),
        )
        return [_quarantine_row(r) for r in rows]

    def quarantine_item(self, item_id: int) -> QuarantineRow | None:
        rows = self._rows(
            "SELECT q.*, COALESCE(i.state, '') AS instance_state FROM quarantine q"
            " LEFT JOIN instances i ON i.id=q.instance_id WHERE q.id=?",
            (item_id,),
        )
        return _quarantine_row(rows[0]) if rows else None

    def discard_quarantine(self, item_id: int, reason: str) -> str:
        """Close a quarantine item for good: its instance is dropped (never forwarded) and its job settled;
        files stay until retention. Returns the instance's new state ('' for a receive-time item)."""
        now = self.ledger.clock()
        with self.ledger._write() as tx:
            item = tx.one("SELECT * FROM quarantine WHERE id=? AND released_at IS NULL", (item_id,))
            if item is None:
                raise LookupError("no open quarantine item with that id")
            tx.run("UPDATE quarantine SET released_at=? WHERE id=? AND released_at IS NULL", (now, item_id))
            if item["instance_id"] is None:
                return ""
            tx.run(
                "UPDATE instances SET state=?, reason=?, updated_at=? WHERE id=? AND state=?",
                (
                    InstanceState.DROPPED,
                    f"discarded: {reason}",
                    now,
                    item["instance_id"],
                    InstanceState.QUARANTINED,
                ),
            )
            if item["job_id"] is not None:
                self._settle(tx, int(item["job_id"]), now)
            return str(InstanceState.DROPPED)

    @staticmethod
    def _settle(tx: Tx, job_id: int, now: float) -> None:
        job = tx.one("SELECT state FROM jobs WHERE id=?", (job_id,))
        if job is None:
            return
        states = [r["state"] for r in tx.rows("SELECT state FROM instances WHERE job_id=?", (job_id,))]
        new = settled_job_state(states, JobState(job["state"]))
        tx.run("UPDATE jobs SET state=?, updated_at=? WHERE id=?", (new, now, job_id))

    # ---- audit -----------------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str, reason: str, outcome: str) -> int:
        with self.ledger._write() as tx:
            return tx.insert(
                "INSERT INTO audit (at, actor, action, target, reason, outcome)"
                " VALUES (?,?,?,?,?,?) RETURNING id",
                (self.ledger.clock(), actor, action, target, reason, outcome),
            )

    def audit_log(self, limit: int = 200, target: str = "") -> list[AuditRow]:
        where, params = ("WHERE target=?", (target,)) if target else ("", ())
        rows = self._rows(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            AuditRow(r["id"], r["at"], r["actor"], r["action"], r["target"], r["reason"], r["outcome"])
            for r in rows
        ]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix(text: str) -> str:
    return _escape_like(text) + "%"


def _job_row(r: Row) -> JobRow:
    return JobRow(
        r["id"],
        r["study_key"],
        r["patient_key"],
        r["state"],
        r["reason"],
        r["follow_up_of"],
        int(r["n"]),
        r["routes"] or "",
        r["created_at"],
        r["updated_at"],
    )


def _instance_row(r: Row) -> InstanceRow:
    return InstanceRow(
        r["id"],
        r["job_id"],
        r["sop_key"],
        r["sop_class_uid"],
        r["transfer_syntax"],
        r["size"],
        r["sha256"],
        r["state"],
        r["reason"],
        r["destination"] or "",
        r["attempts"],
        r["received_at"],
        r["updated_at"],
        r["forwarded_at"],
        _out_hash(r["out_sop_uid"]),
        json.loads(r["detail"]) if r["detail"] else {},
        r["spool_path"] or "",
    )


def _quarantine_row(r: Row) -> QuarantineRow:
    return QuarantineRow(
        r["id"],
        r["kind"],
        r["instance_id"],
        r["job_id"],
        r["reason"],
        r["calling_ae"],
        r["created_at"],
        r["released_at"],
        r["instance_state"],
        r["blob_path"] or "",
    )
