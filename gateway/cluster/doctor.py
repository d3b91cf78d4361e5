"""`vera-gateway doctor` on a cluster config: PostgreSQL reachable, schema migrations current, workers and
nodes heart-beating, no stalled queue entries, the object store's bucket answering.

Results are plain ``(name, status, detail, fix)`` tuples (status ok | warn | fail) that the doctor turns
into its checks, so this module needs nothing from it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

Result = tuple[str, str, str, str]
FIX_PG = "start PostgreSQL or fix 'ledger:' in the service config (host, port, database, PGPASSWORD)"


def cluster_checks(config: Any) -> Iterator[Result]:
    from gateway.core.ledger import LedgerError, migrations
    from gateway.core.ledger.postgres import PostgresLedger

    try:
        ledger = PostgresLedger(config.ledger, upgrade=False, pool_size=1)
        versions = ledger.schema_versions()
    except LedgerError as exc:
        yield ("postgresql", "fail", f"{_where(config.ledger)}: {exc}", FIX_PG)
        return
    yield ("postgresql", "ok", f"{_where(config.ledger)} reachable", "")
    missing = [m.version for m in migrations.MIGRATIONS if m.version not in versions]
    if missing:
        yield ("migrations", "fail", f"missing {missing}", "run: vera-gateway db upgrade (or start any node)")
        ledger.shutdown()
        return
    yield ("migrations", "ok", f"schema at version {migrations.LATEST}", "")
    yield from _heartbeats(ledger, config)
    ledger.shutdown()
    if config.object_store is not None:
        yield _bucket(config)


def _heartbeats(ledger: Any, config: Any) -> Iterator[Result]:
    from procrastinate import sql

    fresh = ledger.query(
        "SELECT COUNT(*) AS n FROM procrastinate_workers"
        " WHERE last_heartbeat > NOW() - make_interval(secs => %s)",
        (config.stall_after_s,),
    )[0]["n"]
    if fresh:
        yield ("workers", "ok", f"{fresh} worker(s) heart-beating", "")
    else:
        yield (
            "workers",
            "warn",
            "no worker heart-beating: study jobs wait",
            "start: vera-gateway worker --queue gpu",
        )
    stalled = ledger.query(
        sql.queries["select_stalled_jobs_by_heartbeat"],
        {"queue": None, "task_name": None, "seconds_since_heartbeat": config.stall_after_s},
    )
    if stalled:
        yield (
            "stalled jobs",
            "warn",
            f"{len(stalled)} job(s) of silent workers",
            "a running node sweeps them",
        )
    now = time.time()
    nodes = ledger.nodes()
    silent = [n["name"] for n in nodes if now - n["heartbeat_at"] > 30]
    detail = f"{len(nodes) - len(silent)} of {len(nodes)} node(s) heart-beating"
    if silent:
        detail += f"; silent: {', '.join(silent[:5])}"
    yield (
        "nodes",
        "warn" if silent else "ok",
        detail,
        "restart or remove the silent nodes" if silent else "",
    )


def _bucket(config: Any) -> Result:
    from gateway.core.objectstore import S3Store, StoreUnavailable

    store = S3Store(config.object_store, "spool")
    try:
        return ("object store", "ok", store.check(), "")
    except StoreUnavailable as exc:
        fix = "check object_store (endpoint_url, bucket) and the AWS credentials in the environment"
        return ("object store", "fail", f"s3://{config.object_store.bucket}: {exc}", fix)


def _where(url: str) -> str:
    """host:port/db of a PostgreSQL URL, without user or password."""
    return url.split("@", 1)[-1]
