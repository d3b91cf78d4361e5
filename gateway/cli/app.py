"""``vera-gateway``: serve, status, quarantine list|show|replay, echo, plus other modules' command groups.

Adding a command group: write a module with ``add_parser(subparsers) -> ArgumentParser`` that registers its
sub-command and sets ``func(args) -> int`` as the parser default, then append its dotted name to
``COMMAND_MODULES``. The global ``--config`` and ``--data-dir`` options are on ``args``. A listed module that
does not exist yet is skipped; any other import error is raised.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from gateway.core.ledger import Ledger, QuarantineItem

COMMAND_MODULES = (
    "dicom_rules.cli",  # rules check|explain|schema
    "gateway.ops.doctor",  # doctor
    "gateway.cluster.cli",  # worker, db upgrade|status (cluster mode)
    "gateway.cli.offline",  # donors, anonymize, import-photos (face pipeline)
    "anonymizer.engines.vera.cli",  # vera (neural engine)
)


def _config(args: argparse.Namespace, **overrides: Any) -> Any:
    from gateway.core.config import load_config

    return load_config(args.config, data_dir=args.data_dir, **overrides)


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.core.service import Service
    from gateway.ops.logs import configure_logging

    configure_logging(args.log_level)
    config = _config(
        args,
        port=args.port,
        bind=args.bind,
        ae_title=args.ae_title,
        rules_file=args.rules,
        metrics_port=args.metrics_port,
        workers=args.workers,
        quiet_period_s=args.quiet_period,
    )
    if config.clustered:
        from gateway.cluster.cli import serve

        return serve(args, config)
    if args.role not in (None, "all"):
        print("vera-gateway: --role needs a cluster config (ledger: postgresql://...)", file=sys.stderr)
        return 2
    service = Service(config)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    service.start()
    done.wait()
    service.stop()
    return 0


def _age(oldest: float | None) -> str:
    if oldest is None:
        return "-"
    seconds = max(0.0, time.time() - oldest)
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def cmd_status(args: argparse.Namespace) -> int:
    from gateway.core.ledger import open_ledger

    config = _config(args)
    if not config.clustered and not config.ledger_path.exists():
        print(f"no ledger at {config.ledger_path}", file=sys.stderr)
        return 1
    ledger = open_ledger(config)
    counts = ledger.counts()
    console = Console()
    for table_name, by_state in (("instances", counts.instances), ("jobs", counts.jobs)):
        table = Table(title=table_name)
        for col in ("state", "count", "oldest"):
            table.add_column(col, justify="left" if col == "state" else "right")
        for state, count in sorted(by_state.items()):
            table.add_row(state, str(count.count), _age(count.oldest_updated_at))
        console.print(table)
    if config.clustered:
        from gateway.cluster.cli import nodes_table

        console.print(nodes_table(ledger))
    console.print(f"quarantine: {len(ledger.quarantine_items())} open item(s)")
    return 0


def _quarantine_table(items: list[QuarantineItem]) -> Table:
    table = Table(title="quarantine")
    for col in ("id", "kind", "instance", "job", "reason", "calling AE", "age", "released"):
        table.add_column(col, overflow="fold", min_width=24 if col == "reason" else None)
    for item in items:
        table.add_row(
            str(item.id),
            item.kind,
            str(item.instance_id or "-"),
            str(item.job_id or "-"),
            item.reason,
            item.calling_ae,
            _age(item.created_at),
            "yes" if item.released_at else "",
        )
    return table


def _quarantine_detail(ledger: Ledger, item: QuarantineItem) -> Table:
    table = Table(title=f"quarantine item {item.id}", show_header=False)
    for key, value in asdict(item).items():
        table.add_row(key, str(value))
    instance = ledger.instance(item.instance_id) if item.instance_id is not None else None
    if instance is not None:
        for key in ("state", "patient_key", "sop_class_uid", "size", "job_id"):
            table.add_row(f"instance.{key}", str(getattr(instance, key)))
    return table


def cmd_quarantine(args: argparse.Namespace) -> int:
    from gateway.core.ledger import open_ledger

    ledger = open_ledger(_config(args))
    console = Console()
    if args.quarantine_command == "list":
        console.print(_quarantine_table(ledger.quarantine_items(include_released=args.all)))
        return 0
    if args.quarantine_command == "show":
        item = ledger.quarantine_item(args.id)
        if item is None:
            console.print(f"no quarantine item {args.id}")
            return 1
        console.print(_quarantine_detail(ledger, item))
        return 0
    try:
        new_state = ledger.release_quarantine(args.id)
    except LookupError as exc:
        console.print(str(exc))
        return 1
    console.print(f"quarantine item {args.id} released: instance is now {new_state}")
    return 0


def resolve_destination(name: str, config: Any) -> Any:
    """A destination name from the rules, ``AE@host:port`` for an ad-hoc DICOM peer, or a DICOMweb URL."""
    from dicom_rules import DicomDestination, DicomWebDestination
    from gateway.core.config import load_rule_set

    if name.startswith(("http://", "https://")):
        return DicomWebDestination(name=name, url=name.rstrip("/"))

    if "@" in name:
        ae_title, _, address = name.partition("@")
        host, _, port = address.rpartition(":")
        return DicomDestination(name=name, ae_title=ae_title, host=host, port=int(port))
    destinations = load_rule_set(config).destinations
    if name not in destinations:
        raise LookupError(f"unknown destination {name!r}; known: {', '.join(sorted(destinations)) or 'none'}")
    return destinations[name]


def cmd_echo(args: argparse.Namespace) -> int:
    from gateway.core.destinations import sender_for

    config = _config(args)
    try:
        destination = resolve_destination(args.destination, config)
    except (LookupError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    started = time.perf_counter()
    sender = sender_for(destination, config)
    ok, detail = sender.probe() if hasattr(sender, "probe") else (sender.echo(), "")
    elapsed = (time.perf_counter() - started) * 1000
    print(f"{args.destination}: {'OK' if ok else 'FAILED'} ({detail or f'{elapsed:.0f} ms'})")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vera-gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=None, help="service config YAML (optional)")
    parser.add_argument("--data-dir", type=Path, default=None, help="spool/ledger/outbox root (default var/)")
    # also accepted after the sub-command (``serve --data-dir var``); SUPPRESS keeps the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    common.add_argument("--data-dir", type=Path, default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve", parents=[common], help="run the gateway (SCP, pipeline, forwarder, metrics)"
    )
    serve.add_argument("--port", type=int)
    serve.add_argument("--bind")
    serve.add_argument("--ae-title")
    serve.add_argument("--rules", type=Path, help="rule file (default: the shipped default rules)")
    serve.add_argument("--metrics-port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--quiet-period", type=float)
    serve.add_argument("--log-level", default="INFO")
    serve.add_argument(
        "--role",
        choices=("receive", "work", "forward", "all"),
        help="cluster mode: what this node does (default all; needs a postgresql:// ledger)",
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser(
        "status", parents=[common], help="queue depth per state, oldest item age, quarantine count"
    ).set_defaults(func=cmd_status)
    quarantine = sub.add_parser("quarantine", parents=[common], help="list, show or replay quarantined items")
    qsub = quarantine.add_subparsers(dest="quarantine_command", required=True)
    qlist = qsub.add_parser("list", parents=[common])
    qlist.add_argument("--all", action="store_true", help="include released items")
    for name in ("show", "replay"):
        qsub.add_parser(name, parents=[common]).add_argument("id", type=int)
    quarantine.set_defaults(func=cmd_quarantine)
    echo = sub.add_parser(
        "echo",
        parents=[common],
        help="C-ECHO or QIDO-RS a destination (rule-file name, AE@host:port or a DICOMweb URL)",
    )
    echo.add_argument("destination")
    echo.set_defaults(func=cmd_echo)
    for module_name in COMMAND_MODULES:
        _register(module_name, sub)
    return parser


def _register(module_name: str, subparsers: Any) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return  # not written yet
        raise
    module.add_parser(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    from anonymizer.keys import SecretError
    from dicom_rules import RulesError
    from gateway.core.config import ConfigError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, SecretError, RulesError) as exc:  # RulesError: one file:line:col line per error
        print(f"vera-gateway: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
