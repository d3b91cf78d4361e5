"""The ledger on PostgreSQL (psycopg 3), shared by every node of a cluster.

The transitions are the portable ones of :class:`SqlLedger` (same statements, same fences as SQLite); this
backend supplies pooled connections and what several writers need beyond them: grouping is serialised by a
transaction-level advisory lock (SQLite serialises every writer with ``BEGIN IMMEDIATE``); forwarders lease
due outputs with ``FOR UPDATE SKIP LOCKED`` and an expiry, so two nodes never send one item at the same time
and a dead node's leases run out; the schema is versioned (:mod:`.migrations`). The pool checks a
connection before lending it, so nodes reconnect by themselves after a database restart; a failure surfaces
as :class:`LedgerError` and the caller answers 0xA700 or retries at its next tick.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from gateway.core.ledger import migrations
from gateway.core.ledger.models import (
    ForwardOutcome,
    ForwardRecorded,
    Grouped,
    InstanceState,
    Job,
    JobRun,
    JobState,
    LedgerError,
    OutputItem,
    ReceivedInstance,
    ReceiveResult,
)
from gateway.core.ledger.sql import SqlLedger, Tx, _record

GROUPING_LOCK = 0x76657261_02

LEASE_DUE_OUTPUTS = (
    "UPDATE instances SET lease_owner=%s, lease_until=%s WHERE id IN ("
    " SELECT id FROM instances WHERE (state=%s OR (state=%s AND next_attempt_at<=%s))"
    " AND (lease_until IS NULL OR lease_until<%s) AND NOT (destination = ANY(%s))"
    " ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, job_id, destination, out_path, out_sop_uid, attempts, first_failure_at"
)
# Which of some object keys a ledger row still references, per object-store area.
REFERENCED_KEYS = {
    "spool": "SELECT spool_path AS key FROM instances WHERE spool_path = ANY(%s)",
    "outbox": "SELECT out_path AS key FROM instances WHERE out_path = ANY(%s)",
    "quarantine": "SELECT blob_path AS key FROM quarantine WHERE blob_path = ANY(%s)",
}
RELEASE_LEASES = (
    "UPDATE instances SET lease_owner=NULL, lease_until=NULL WHERE id = ANY(%s) AND lease_owner=%s"
)


def node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pyformat(statement: str) -> str:
    return statement.replace("?", "%s")  # the portable statements have no '?' or '%' inside literals


class PostgresLedger(SqlLedger):
    """``node`` names this process in leases and heart-beats; ``lease_s``: how long a forwarder owns the
    outputs it took (longer than one batch send)."""

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
        from psycopg_pool import ConnectionPool

        super().__init__(clock)
        self.url = url
        self.node = node or node_name()
        self.lease_s = lease_s
        self._serialised = threading.local()
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"connect_timeout": 5},
            check=ConnectionPool.check_connection,
            open=True,
            name="vera-ledger",
        )
        if upgrade:
            self.upgrade()

    # ---- connections ---------------------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=10) as conn, conn.transaction():
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise LedgerError(f"postgresql: {type(exc).__name__}") from exc

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._connection() as conn:
            if getattr(self._serialised, "on", False):
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (GROUPING_LOCK,))
            yield Tx(conn.cursor(), _pyformat)

    _read = _write  # a read in a short transaction of its own

    def query(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """One native (``%s``) statement in its own transaction, rows as dicts (the queue adapter's SQL)."""
        from psycopg.rows import dict_row

        with self._connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            cur.execute(statement, params)
            return list(cur) if cur.description else []

    def upgrade(self) -> list[int]:
        """Apply missing schema migrations (every node does at start-up; a lock makes it happen once)."""
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                return migrations.upgrade(conn, self.clock)
        except psycopg.Error as exc:
            raise LedgerError(f"postgresql: {type(exc).__name__}") from exc

    def schema_versions(self) -> list[int]:
        with self._connection() as conn:
            return migrations.applied_versions(conn)

    def close(self) -> None:
        """Connections go back to the pool after each transaction: nothing is held per thread."""

    def shutdown(self) -> None:
        self.pool.close()

    # ---- what several writers need ---------------------------------------------------------------------
    def record_received(self, item: ReceivedInstance) -> ReceiveResult:
        """Two receivers storing the same bytes at the same moment: the loser's insert hits the unique
        (sop_key, sha256) constraint; recorded again, it finds the winner's row (idempotent, not 0xA700)."""
        try:
            return super().record_received(item)
        except LedgerError as exc:
            if type(exc.__cause__).__name__ != "UniqueViolation":
                raise
            return super().record_received(item)

    def group_received(self) -> list[Grouped]:
        self._serialised.on = True  # one grouper at a time across nodes: one collecting job per study
        try:
            return super().group_received()
        finally:
            self._serialised.on = False

    def lease_outputs(self, limit: int = 500, exclude: Sequence[str] = ()) -> list[OutputItem]:
        """:meth:`due_outputs` for one forwarder among several: lease the outputs due now to this node for
        ``lease_s``. Rows another forwarder holds (row lock or unexpired lease) are skipped, so no item goes
        out from two nodes at the same time."""
        now = self.clock()
        args = (self.node, now + self.lease_s, InstanceState.DEIDENTIFIED, InstanceState.RETRY_WAITING, now,
                now, list(exclude), limit)  # fmt: skip
        with self._connection() as conn:
            cur = conn.cursor()
            rows = Tx(cur).rows(LEASE_DUE_OUTPUTS, args)
        return [
            _record(OutputItem, {"instance_id": r["id"], **r}) for r in sorted(rows, key=lambda r: r["id"])
        ]

    def record_forwarding(self, outcomes: Sequence[ForwardOutcome]) -> list[ForwardRecorded]:
        """Record, then give the leases back (a retry is due again after its back-off, not the lease)."""
        recorded = super().record_forwarding(outcomes)
        if outcomes:
            with self._connection() as conn:
                conn.execute(RELEASE_LEASES, ([o.item.instance_id for o in outcomes], self.node))
        return recorded

    # ---- the queue's view (a queue entry names only a job id) ------------------------------------------
    def startable_job(self, job_id: int) -> Job | None:
        rows = self.query(
            "SELECT id, study_key, patient_key, state, follow_up_of, attempts FROM jobs"
            " WHERE id=%s AND state IN (%s, %s)",
            (job_id, JobState.GROUPED, JobState.RETRY_WAITING),
        )
        return _record(Job, rows[0], state=JobState) if rows else None

    def running_job(self, job_id: int) -> JobRun | None:
        """The current run of a processing job (the stalled-job sweep knows only the id)."""
        rows = self.query("SELECT attempts FROM jobs WHERE id=%s AND state=%s", (job_id, JobState.PROCESSING))
        return JobRun(job_id, int(rows[0]["attempts"]), ()) if rows else None

    def referenced_keys(self, area: str, keys: Sequence[str]) -> set[str]:
        """The keys among ``keys`` (object-store relpaths of ``area``) that some ledger row refers to."""
        if not keys:
            return set()
        return {r["key"] for r in self.query(REFERENCED_KEYS[area], (list(keys),))}

    # ---- nodes (status, doctor) ----------------------------------------------------------------------
    def heartbeat_node(self, role: str, started_at: float) -> None:
        self.query(
            "INSERT INTO nodes (name, role, pid, started_at, heartbeat_at) VALUES (%s,%s,%s,%s,%s)"
            " ON CONFLICT (name) DO UPDATE SET role=EXCLUDED.role, heartbeat_at=EXCLUDED.heartbeat_at",
            (self.node, role, os.getpid(), started_at, self.clock()),
        )

    def nodes(self) -> list[dict[str, Any]]:
        return self.query("SELECT name, role, pid, started_at, heartbeat_at FROM nodes ORDER BY name")
