"""Cluster commands: `vera-gateway worker --queue gpu`, `vera-gateway db upgrade|status`, and the cluster
views of `serve --role`, `status` and `quarantine` (called by :mod:`gateway.cli.app` when the service config
names a PostgreSQL ledger)."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import Any

from rich.table import Table


def _config(args: argparse.Namespace, **overrides: Any) -> Any:
    from gateway.core.config import load_config

    config = load_config(args.config, data_dir=args.data_dir, **overrides)
    if not config.clustered:
        raise SystemExit("vera-gateway: this command needs 'ledger: postgresql://…' in the service config")
    return config


def cmd_worker(args: argparse.Namespace) -> int:
    from anonymizer.keys import load_or_create_secret
    from gateway.cluster.node import open_ledger, rules_source
    from gateway.cluster.queue import Coordinator
    from gateway.cluster.runner import JobRunner, run_worker
    from gateway.core.objectstore import open_store
    from gateway.ops.logs import configure_logging

    configure_logging(args.log_level)
    config = _config(args, work_queue=args.queue)
    ledger = open_ledger(config, "work")
    spool, outbox = open_store(config, "spool"), open_store(config, "outbox")
    runner = JobRunner(config, ledger, spool, outbox, rules_source(config))
    runner.prepare(load_or_create_secret(config.secret_path))
    stop = threading.Event()
    coordinator = Coordinator(config, ledger)  # a worker also sweeps: stalled jobs move with no receiver up
    threading.Thread(target=coordinator.run, args=(stop,), name="coordinator", daemon=True).start()
    if args.metrics_port is not None:  # per worker: several workers on one host each need their own port
        from gateway.ops.metrics import start_http

        start_http(config.metrics_bind, args.metrics_port, lambda: {"worker": True})
    try:
        run_worker(config, runner, concurrency=args.concurrency)
    finally:
        stop.set()
    return 0


def serve(args: argparse.Namespace, config: Any) -> int:
    """`serve` on a cluster config: the roles of this node (``work`` runs a worker in the foreground)."""
    from gateway.cluster.node import ClusterNode, Role

    role = Role(args.role or "all")
    if role is Role.WORK:
        args.queue, args.concurrency = config.work_queue, 1
        args.metrics_port = config.metrics_port
        return cmd_worker(args)
    node = ClusterNode(config, role)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    node.start()
    done.wait()
    node.stop()
    return 0


def _age(at: float | None) -> str:
    return "-" if at is None else f"{max(0.0, time.time() - at):.0f} s"


def nodes_table(ledger: Any) -> Table:
    """The cluster's nodes and how long ago each last heart-beat (for `vera-gateway status`)."""
    table = Table(title="nodes")
    for col in ("node", "role", "last heartbeat"):
        table.add_column(col)
    for row in ledger.nodes():
        table.add_row(row["name"], row["role"], _age(row["heartbeat_at"]))
    return table


def cmd_db(args: argparse.Namespace) -> int:
    """`db upgrade`: apply the schema migrations and create the shared secret when missing (once, before
    the first node; nodes also migrate at start-up). `db status`: exit 1 when migrations are missing."""
    from anonymizer.keys import load_or_create_secret
    from gateway.core.ledger import migrations
    from gateway.core.ledger.postgres import PostgresLedger

    config = _config(args)
    ledger = PostgresLedger(config.ledger, upgrade=False)
    if args.db_command == "upgrade":
        applied = ledger.upgrade()
        print(f"applied migrations: {applied or 'none (up to date)'}")
        load_or_create_secret(config.secret_path)  # every node must share it: made once, here, if missing
        print(f"shared secret: {config.secret_path}")
    versions = ledger.schema_versions()
    missing = [m.version for m in migrations.MIGRATIONS if m.version not in versions]
    print(f"schema versions: {versions}; latest {migrations.LATEST}; missing {missing or 'none'}")
    return 0 if not missing else 1


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    worker = subparsers.add_parser("worker", parents=[common], help="cluster: run study jobs from the queue")
    worker.add_argument("--queue", default="gpu", help="queue to take jobs from (default gpu)")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (1 per GPU)")
    worker.add_argument("--log-level", default="INFO")
    worker.add_argument("--metrics-port", type=int, help="serve this worker's /metrics (default: none)")
    worker.set_defaults(func=cmd_worker)
    db = subparsers.add_parser("db", parents=[common], help="cluster: PostgreSQL ledger schema")
    db.add_argument("db_command", choices=("upgrade", "status"))
    db.set_defaults(func=cmd_db)
    return worker
