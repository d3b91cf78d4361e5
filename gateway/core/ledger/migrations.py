"""Versioned schema of the PostgreSQL ledger: numbered steps, applied once each, in order, under a lock.

``schema_migrations`` records each applied version. Every node calls :func:`upgrade` at start-up (and
``vera-gateway db upgrade`` calls it by hand); an advisory lock makes concurrent starts apply each step once.
A step is never edited after release: a change is a new step. Step 2 installs Procrastinate's own schema
(its tables and functions, version-matched to the pinned ``procrastinate`` package).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MIGRATION_LOCK = 0x76657261_01  # pg_advisory_xact_lock key: "vera" + 1

INITIAL = """
CREATE TABLE instances (
    id BIGSERIAL PRIMARY KEY,
    sop_key TEXT NOT NULL, study_key TEXT NOT NULL, patient_key TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL, transfer_syntax TEXT NOT NULL,
    sha256 TEXT NOT NULL, spool_path TEXT NOT NULL, size BIGINT NOT NULL,
    calling_ae TEXT NOT NULL, calling_ip TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', job_id BIGINT, duplicate_of BIGINT,
    received_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    destination TEXT, out_path TEXT, out_sop_uid TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION,
    first_failure_at DOUBLE PRECISION, forwarded_at DOUBLE PRECISION,
    lease_owner TEXT, lease_until DOUBLE PRECISION,  -- forwarder claim; expires: a dead node's items move
    UNIQUE (sop_key, sha256)
);
CREATE INDEX instances_state ON instances (state);
CREATE INDEX instances_job ON instances (job_id);
CREATE INDEX instances_spool ON instances (spool_path);
CREATE INDEX instances_out ON instances (out_path);
CREATE TABLE jobs (
    id BIGSERIAL PRIMARY KEY,
    study_key TEXT NOT NULL, patient_key TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', follow_up_of BIGINT,
    first_at DOUBLE PRECISION NOT NULL, last_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at DOUBLE PRECISION,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
    worker TEXT  -- the node running the current attempt (status, post-mortems)
);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_study ON jobs (study_key);
CREATE TABLE quarantine (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL, instance_id BIGINT, job_id BIGINT,
    reason TEXT NOT NULL, blob_path TEXT, calling_ae TEXT NOT NULL DEFAULT '',
    created_at DOUBLE PRECISION NOT NULL, released_at DOUBLE PRECISION
);
CREATE TABLE nodes (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL, heartbeat_at DOUBLE PRECISION NOT NULL
);
"""


def _procrastinate_schema(conn: Any) -> None:
    from procrastinate.schema import SchemaManager

    conn.execute(SchemaManager.get_schema())


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Any], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "ledger tables", lambda conn: conn.execute(INITIAL)),
    Migration(2, "procrastinate 3.10 schema", _procrastinate_schema),
)
LATEST = MIGRATIONS[-1].version


def applied_versions(conn: Any) -> list[int]:
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
    if not exists:
        return []
    return [int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def upgrade(conn: Any, clock: Callable[[], float]) -> list[int]:
    """Apply every missing step in one transaction each; returns the versions applied now."""
    done: list[int] = []
    for step in MIGRATIONS:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " name TEXT NOT NULL,"
                " applied_at DOUBLE PRECISION NOT NULL)"
            )
            if step.version in applied_versions(conn):
                continue
            step.apply(conn)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (step.version, step.name, clock()),
            )
            done.append(step.version)
    return done
