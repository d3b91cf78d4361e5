"""The ledger's admin block: state-change trail, per-instance processing details, the audit log, and the read
queries behind ``vera-gateway status|quarantine`` and the web console.

Kept apart from ``ledger.py`` (the state machine) so neither grows past a readable size; the SQL lives
here and in ``ledger.py`` only. The trail is written by SQLite triggers on ``instances``, so every transition
of the state machine is recorded in the same transaction without it knowing. Everything stored is a ledger
id, a keyed hash, a pseudonym, a state or a reason — never patient data.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

# Executed by Ledger.__init__ (idempotent), so the trail exists whether or not the console runs.
ADMIN_SCHEMA = """
CREATE TABLE IF NOT EXISTS instance_events (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL, job_id INTEGER, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instance_events_instance ON instance_events (instance_id);
CREATE INDEX IF NOT EXISTS instance_events_at ON instance_events (at);
CREATE TRIGGER IF NOT EXISTS instance_events_insert AFTER INSERT ON instances BEGIN
    INSERT INTO instance_events (instance_id, job_id, state, reason, at)
    VALUES (NEW.id, NEW.job_id, NEW.state, NEW.reason, NEW.updated_at);
END;
CREATE TRIGGER IF NOT EXISTS instance_events_update AFTER UPDATE OF state ON instances
WHEN NEW.state IS NOT OLD.state BEGIN
    INSERT INTO instance_events (instance_id, job_id, state, reason, at)
    VALUES (NEW.id, NEW.job_id, NEW.state, NEW.reason, NEW.updated_at);
END;
CREATE TABLE IF NOT EXISTS instance_details (
    instance_id INTEGER PRIMARY KEY, job_id INTEGER, route TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS instance_details_route ON instance_details (route);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', outcome TEXT NOT NULL DEFAULT ''
);
"""


class LedgerLike(Protocol):
    """What this block needs of :class:`gateway.core.ledger.Ledger`."""

    clock: Callable[[], float]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...
    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


@dataclass(frozen=True)
class StateCount:
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

    # ---- status ----------------------------------------------------------------------------------------
    def state_counts(self, table: str) -> list[StateCount]:
        if table not in ("instances", "jobs"):
            raise ValueError(table)
        rows = self.ledger.query(
            f"SELECT state, COUNT(*) AS n, MIN(updated_at) AS oldest FROM {table}"
            " GROUP BY state ORDER BY state"
        )
        return [StateCount(r["state"], int(r["n"]), r["oldest"]) for r in rows]

    def transitions_since(self, state: str, since: float) -> list[float]:
        """Timestamps of every transition into ``state`` after ``since`` (throughput charts)."""
        rows = self.ledger.query(
            "SELECT at FROM instance_events WHERE state=? AND at>=? ORDER BY at", (state, since)
        )
        return [float(r["at"]) for r in rows]

    def destinations(self) -> list[DestinationRow]:
        rows = self.ledger.query(
            "SELECT destination,"
            " SUM(state='forwarded') AS forwarded,"
            " SUM(state IN ('deidentified','retry_waiting')) AS backlog,"
            " SUM(state='retry_waiting') AS retrying,"
            " MAX(forwarded_at) AS last_success"
            " FROM instances WHERE destination IS NOT NULL AND destination<>'' GROUP BY destination"
            " ORDER BY destination"
        )
        out = []
        for r in rows:
            err = self.ledger.query(
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
        rows = self.ledger.query(
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
        rows = self.ledger.query(
            "SELECT j.*, (SELECT COUNT(*) FROM instances i WHERE i.job_id=j.id) AS n,"
            " (SELECT GROUP_CONCAT(DISTINCT d.route) FROM instance_details d WHERE d.job_id=j.id) AS routes"
            " FROM jobs j WHERE j.study_key=? ORDER BY j.id",
            (study_key,),
        )
        return [_job_row(r) for r in rows]

    def job_instances(self, job_id: int) -> list[InstanceRow]:
        """Instances now in the job, plus those that were in it before a replay moved them on."""
        rows = self.ledger.query(
            "SELECT i.*, d.detail FROM instances i LEFT JOIN instance_details d ON d.instance_id=i.id"
            " WHERE i.job_id=? OR i.id IN (SELECT instance_id FROM instance_events WHERE job_id=?)"
            " ORDER BY i.id",
            (job_id, job_id),
        )
        return [_instance_row(r) for r in rows]

    def instance(self, instance_id: int) -> InstanceRow | None:
        rows = self.ledger.query(
            "SELECT i.*, d.detail FROM instances i LEFT JOIN instance_details d ON d.instance_id=i.id"
            " WHERE i.id=?",
            (instance_id,),
        )
        return _instance_row(rows[0]) if rows else None

    def events(self, instance_ids: Sequence[int]) -> list[StateEvent]:
        if not instance_ids:
            return []
        marks = ",".join("?" * len(instance_ids))
        rows = self.ledger.query(
            f"SELECT * FROM instance_events WHERE instance_id IN ({marks}) ORDER BY instance_id, id",
            tuple(instance_ids),
        )
        return [StateEvent(r["instance_id"], r["job_id"], r["state"], r["reason"], r["at"]) for r in rows]

    def record_details(self, details: Sequence[tuple[int, int, str, dict[str, Any]]]) -> None:
        """(instance_id, job_id, route, detail) from a finished job: route, pixel plan, verification."""
        with self.ledger.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO instance_details (instance_id, job_id, route, detail)"
                " VALUES (?,?,?,?)",
                [
                    (iid, jid, route, json.dumps(detail, sort_keys=True))
                    for iid, jid, route, detail in details
                ],
            )

    def routes(self) -> list[str]:
        return [
            r["route"] for r in self.ledger.query("SELECT DISTINCT route FROM instance_details ORDER BY 1")
        ]

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
        rows = self.ledger.query(
            "SELECT q.*, COALESCE(i.state, '') AS instance_state FROM quarantine q"
            f" LEFT JOIN instances i ON i.id=q.instance_id WHERE {' AND '.join(where)} ORDER BY q.id LIMIT ?",
            (*params, limit),
        )
        return [_quarantine_row(r) for r in rows]

    def quarantine_item(self, item_id: int) -> QuarantineRow | None:
        rows = self.ledger.query(
            "SELECT q.*, COALESCE(i.state, '') AS instance_state FROM quarantine q"
            " LEFT JOIN instances i ON i.id=q.instance_id WHERE q.id=?",
            (item_id,),
        )
        return _quarantine_row(rows[0]) if rows else None

    def discard_quarantine(self, item_id: int, reason: str) -> str:
        """Close a quarantine item for good: its instance is dropped (never forwarded), its files stay until
        retention. Returns the instance's new state ('' for a receive-time item without one)."""
        now = self.ledger.clock()
        with self.ledger.transaction() as db:
            item = db.execute(
                "SELECT * FROM quarantine WHERE id=? AND released_at IS NULL", (item_id,)
            ).fetchone()
            if item is None:
                raise LookupError("no open quarantine item with that id")
            db.execute("UPDATE quarantine SET released_at=? WHERE id=?", (now, item_id))
            if item["instance_id"] is None:
                return ""
            db.execute(
                "UPDATE instances SET state='dropped', reason=?, updated_at=?"
                " WHERE id=? AND state='quarantined'",
                (f"discarded: {reason}", now, item["instance_id"]),
            )
            return "dropped"

    # ---- audit -----------------------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str, reason: str, outcome: str) -> int:
        with self.ledger.transaction() as db:
            cur = db.execute(
                "INSERT INTO audit (at, actor, action, target, reason, outcome) VALUES (?,?,?,?,?,?)",
                (self.ledger.clock(), actor, action, target, reason, outcome),
            )
            return int(cur.lastrowid or 0)

    def audit_log(self, limit: int = 200, target: str = "") -> list[AuditRow]:
        where, params = ("WHERE target=?", (target,)) if target else ("", ())
        rows = self.ledger.query(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        return [
            AuditRow(r["id"], r["at"], r["actor"], r["action"], r["target"], r["reason"], r["outcome"])
            for r in rows
        ]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _prefix(text: str) -> str:
    return _escape_like(text) + "%"


def _job_row(r: sqlite3.Row) -> JobRow:
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


def _instance_row(r: sqlite3.Row) -> InstanceRow:
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
    )


def _quarantine_row(r: sqlite3.Row) -> QuarantineRow:
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
    )
