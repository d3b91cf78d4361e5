"""``vera-gateway status | studies | quarantine | audit``: the admin's commands, over the same service layer
as the web console (:class:`gateway.ops.admin.AdminService`).

The CLI actor is the operating-system user with the admin role: whoever can read the ledger file can act on
it. Actions are audited exactly as from the console.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table


def _service(args: argparse.Namespace) -> Any:
    from gateway.core.config import load_config
    from gateway.ops.admin import AdminService

    config = load_config(args.config, data_dir=args.data_dir)
    if not config.clustered and not config.ledger_path.exists():
        print(f"no ledger at {config.ledger_path}", file=sys.stderr)
        return None
    return AdminService.for_config(config)


def _actor() -> Any:
    from gateway.ops.admin import Actor, Role

    return Actor(f"cli:{getpass.getuser()}", Role.ADMIN)


def age(at: float | None, now: float | None = None) -> str:
    if at is None:
        return "-"
    seconds = max(0.0, (now or time.time()) - at)
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def cmd_status(args: argparse.Namespace) -> int:
    service = _service(args)
    if service is None:
        return 1
    view = service.overview()
    console = Console()
    for title, counts in (("instances", view.instances), ("jobs", view.jobs)):
        table = Table(title=title)
        for col in ("state", "count", "oldest"):
            table.add_column(col, justify="left" if col == "state" else "right")
        for c in counts:
            table.add_row(c.state, str(c.count), age(c.oldest))
        console.print(table)
    console.print(f"queue depth: {view.queue_depth}, oldest active item: {age(view.oldest_active_at)}")
    console.print(f"forwarded last hour: {sum(view.hour.counts)}, last day: {sum(view.day.counts)}")
    for dest, breaker in view.destinations:
        console.print(
            f"destination {dest.destination}: forwarded {dest.forwarded}, backlog {dest.backlog},"
            f" last success {age(dest.last_success)} ago, last error {dest.last_error or '-'}"
            + (f", breaker {breaker}" if breaker != "closed" else "")
        )
    if view.rules is not None:
        rules = view.rules
        where = f" {rules.path}" if rules.path else ""
        unchecked = ", not validated here: see rules check" if rules.last_result == "unchecked" else ""
        console.print(
            f"rules: {rules.name}{where} sha256 {rules.sha256[:16]} ({rules.routes} routes{unchecked})"
        )
    if service.config.clustered:
        from gateway.cluster.cli import nodes_table

        console.print(nodes_table(service.ledger))
    console.print(f"quarantine: {view.open_quarantine} open item(s)")
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from gateway.core.ledger.admin import JobQuery

    service = _service(args)
    if service is None:
        return 1
    console = Console()
    if args.studies_command == "show":
        return _show_trail(service, args.job_id, console)
    query = JobQuery(text=args.search or "", state=args.state or "", route=args.route or "", limit=args.limit)
    table = Table(title="studies (jobs)")
    for col in ("job", "patient pseudonym", "study key", "state", "instances", "routes", "updated"):
        table.add_column(col)
    for job in service.find_jobs(query):
        table.add_row(
            str(job.id),
            job.patient_key[:16],
            job.study_key[:16],
            job.state,
            str(job.instances),
            job.routes or "-",
            age(job.updated_at),
        )
    console.print(table)
    return 0


def _show_trail(service: Any, job_id: int, console: Console) -> int:
    trail = service.trail(job_id)
    if trail is None:
        console.print(f"no job {job_id}")
        return 1
    job = trail.job
    console.print(f"job {job.id}: {job.state} patient {job.patient_key[:16]} study {job.study_key[:16]}")
    for it in trail.instances:
        inst = it.instance
        detail = inst.detail
        console.print(
            f"instance {inst.id}: {inst.state} {inst.reason or ''} route {detail.get('route', '-')}"
            f" pixels {detail.get('pixels', '-')} verified {detail.get('verified', '-')}"
        )
        for event in it.events:
            console.print(
                f"  {time.strftime('%H:%M:%S', time.localtime(event.at))} {event.state} {event.reason}"
            )
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    from gateway.ops.admin import InvalidInput

    service = _service(args)
    if service is None:
        return 1
    console = Console()
    command = args.quarantine_command
    if command == "list":
        table = Table(title="quarantine")
        for col in ("id", "kind", "instance", "job", "reason", "calling AE", "age", "released"):
            table.add_column(col, overflow="fold", min_width=24 if col == "reason" else None)
        for row in service.quarantine(include_released=args.all, kind=args.kind or ""):
            table.add_row(
                str(row.id),
                row.kind,
                str(row.instance_id or "-"),
                str(row.job_id or "-"),
                row.reason,
                row.calling_ae,
                age(row.created_at),
                "yes" if row.released_at else "",
            )
        console.print(table)
        return 0
    if command == "show":
        return _show_item(service, args.id, console)
    try:
        if command == "replay":
            new_state = service.replay(args.id, _actor(), args.reason or "")
        else:
            new_state = service.discard(args.id, _actor(), args.reason or "")
    except (LookupError, InvalidInput) as exc:
        console.print(str(exc))
        return 1
    console.print(f"quarantine item {args.id} {command}ed: instance is now {new_state or '-'}")
    return 0


def _show_item(service: Any, item_id: int, console: Console) -> int:
    detail = service.quarantine_detail(item_id)
    if detail is None:
        console.print(f"no quarantine item {item_id}")
        return 1
    table = Table(title=f"quarantine item {item_id}", show_header=False)
    for key, value in vars(detail.item).items():
        if key.endswith("_at"):
            table.add_row(key, when(value))
        elif key != "blob_path":
            table.add_row(key, str(value))
    instance = detail.instance.instance if detail.instance is not None else None
    table.add_row("file (as received)", received_file(service.config, detail.item, instance))
    if instance is not None:
        for key in ("state", "sop_class_uid", "size", "job_id"):
            table.add_row(f"instance.{key}", str(getattr(instance, key)))
    for entry in detail.audit:
        table.add_row("audit", f"{entry.actor} {entry.action} {entry.reason} → {entry.outcome}")
    console.print(table)
    return 0


def when(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def received_file(config: Any, item: Any, instance: Any) -> str:
    """Where a quarantined item's bytes lie, as received (patient data, not de-identified), to look at before
    a replay or discard: a receive-time item's under quarantine/, a later one's spool file."""
    if item.blob_path:
        area, relpath = config.quarantine_dir, item.blob_path
    elif instance is not None and instance.spool_path:
        area, relpath = config.spool_dir, instance.spool_path
    else:
        return "-" if instance is None else "- (removed by retention)"
    if config.object_store is not None:
        return f"{area.name}/{relpath} (object store)"
    return str(area / relpath)


def cmd_audit(args: argparse.Namespace) -> int:
    service = _service(args)
    if service is None:
        return 1
    table = Table(title="audit log")
    for col in ("when", "who", "what", "target", "reason", "outcome"):
        table.add_column(col, overflow="fold")
    for row in service.audit_log(args.limit):
        table.add_row(when(row.at), row.actor, row.action, row.target, row.reason, row.outcome)
    Console().print(table)
    return 0


def add_parser(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Register status, studies, quarantine and audit on the gateway's sub-command parsers."""
    sub = subparsers
    sub.add_parser(
        "status",
        parents=[common],
        help="queue depth per state, oldest item age, destinations, quarantine count",
    ).set_defaults(func=cmd_status)
    studies = sub.add_parser("studies", parents=[common], help="search studies (jobs) or show one's trail")
    ssub = studies.add_subparsers(dest="studies_command", required=True)
    search = ssub.add_parser("search", parents=[common])
    search.add_argument("search", nargs="?", help="job id, or a prefix of the patient pseudonym / study key")
    search.add_argument("--state")
    search.add_argument("--route")
    search.add_argument("--limit", type=int, default=50)
    ssub.add_parser("show", parents=[common]).add_argument("job_id", type=int)
    studies.set_defaults(func=cmd_studies)
    quarantine = sub.add_parser(
        "quarantine", parents=[common], help="list, show, replay or discard quarantined items"
    )
    qsub = quarantine.add_subparsers(dest="quarantine_command", required=True)
    qlist = qsub.add_parser("list", parents=[common])
    qlist.add_argument("--all", action="store_true", help="include released items")
    qlist.add_argument("--kind", choices=("receive", "instance", "job", "forward"))
    qsub.add_parser("show", parents=[common]).add_argument("id", type=int)
    for name, needs_reason in (("replay", False), ("discard", True)):
        action = qsub.add_parser(name, parents=[common])
        action.add_argument("id", type=int)
        action.add_argument("--reason", required=needs_reason, help="recorded in the audit log")
    quarantine.set_defaults(func=cmd_quarantine)
    audit = sub.add_parser("audit", parents=[common], help="who replayed or discarded what, when and why")
    audit.add_argument("--limit", type=int, default=100)
    audit.set_defaults(func=cmd_audit)
