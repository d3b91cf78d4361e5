"""The admin's service layer: one implementation behind ``vera-gateway status|quarantine|rules`` and the web
console (``gateway/console/``).

Everything returned here is PHI-free by construction (ledger ids, keyed hashes, pseudonyms, states, reasons,
rule names), except :meth:`AdminService.explain`, which shows an uploaded file's own values to an admin.
Actions (replay, discard, rule save) check the actor's role and are written to the audit log (who, when, what,
reason) and counted in ``vera_gateway_admin_actions_total``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from gateway.core.config import GatewayConfig, load_rule_set
from gateway.core.ledger import Ledger, open_ledger
from gateway.core.ledger.admin import (
    AdminLedger,
    AuditRow,
    DestinationRow,
    InstanceRow,
    JobQuery,
    JobRow,
    QuarantineRow,
    StateEvent,
    StateTally,
)

if TYPE_CHECKING:  # dicom_rules loads pydicom: `status` and `quarantine` start without it
    from dicom_rules import RuleSet

ACTIVE_STATES = ("received", "grouped", "processing", "deidentified", "retry_waiting")
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
MAX_RULES_BYTES = 1024 * 1024


class Role(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


class PermissionDenied(PermissionError):
    """The actor's role does not allow this action."""


class InvalidInput(ValueError):
    """The request itself is wrong (not DICOM, too large, empty reason); the message says how."""


class WatcherLike(Protocol):
    last_result: tuple[str, float, tuple[str, ...]]


# ---- result types ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Throughput:
    """Transitions into ``state`` per bucket, oldest bucket first."""

    state: str
    bucket_s: int
    counts: tuple[int, ...]
    end: float


@dataclass(frozen=True)
class RulesStatus:
    name: str
    sha256: str
    file: str  # file name only ('' = the shipped defaults)
    routes: int
    last_result: str  # loaded | reloaded | rejected | unchecked (read, not validated: the CLI's `status`)
    last_result_at: float | None
    errors: tuple[str, ...]
    path: str = ""  # the full path ('' when loaded by a running service)


@dataclass(frozen=True)
class Overview:
    instances: tuple[StateTally, ...]
    jobs: tuple[StateTally, ...]
    oldest_active_at: float | None
    queue_depth: int
    open_quarantine: int
    hour: Throughput
    day: Throughput
    destinations: tuple[tuple[DestinationRow, str], ...]  # (ledger view, breaker state)
    engine: str
    device: str
    workers: int
    memory: dict[str, int] = field(default_factory=dict)  # bytes: rss, total, available
    rules: RulesStatus | None = None


@dataclass(frozen=True)
class StageDurations:
    waiting: float | None  # received → processing started
    processing: float | None  # processing → deidentified
    forwarding: float | None  # deidentified → forwarded
    total: float | None


@dataclass(frozen=True)
class InstanceTrail:
    instance: InstanceRow
    events: tuple[StateEvent, ...]
    durations: StageDurations


@dataclass(frozen=True)
class JobTrail:
    job: JobRow
    study_jobs: tuple[JobRow, ...]
    instances: tuple[InstanceTrail, ...]
    quarantine: tuple[QuarantineRow, ...]


@dataclass(frozen=True)
class QuarantineDetail:
    item: QuarantineRow
    instance: InstanceTrail | None
    audit: tuple[AuditRow, ...]


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    errors: tuple[tuple[int, int, str, str], ...]  # (line, column, severity, message + hint)
    name: str = ""
    sha256: str = ""
    routes: tuple[tuple[str, str, str, str], ...] = ()  # (name, when, then, pixels)


class AdminService:
    """Reads and actions over one ledger; ``rules`` returns the rule set in force (hot-reloaded)."""

    def __init__(
        self,
        config: GatewayConfig,
        ledger: Ledger,
        rules: Callable[[], RuleSet] | None = None,
        *,
        watcher: WatcherLike | None = None,
        breakers: Callable[[], dict[str, str]] | None = None,
        keys: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.store = AdminLedger(ledger)
        self._rules = rules
        self.watcher = watcher
        self.breakers = breakers or dict
        self.keys = keys
        self.clock = clock

    @classmethod
    def for_config(cls, config: GatewayConfig) -> AdminService:
        """The CLI's instance: no running service, so no breaker states and the rules read from the file."""
        return cls(config, open_ledger(config))

    def rules(self) -> RuleSet:
        return self._rules() if self._rules is not None else load_rule_set(self.config)

    # ---- overview --------------------------------------------------------------------------------------
    def overview(self) -> Overview:
        instances = tuple(self.store.state_counts("instances"))
        active = [c for c in instances if c.state in ACTIVE_STATES]
        oldest = min((c.oldest for c in active if c.oldest is not None), default=None)
        breakers = self.breakers()
        now = self.clock()
        return Overview(
            instances=instances,
            jobs=tuple(self.store.state_counts("jobs")),
            oldest_active_at=oldest,
            queue_depth=sum(c.count for c in active),
            open_quarantine=self.store.open_quarantine_count(),
            hour=self.throughput("forwarded", 3600, 12, now),
            day=self.throughput("forwarded", 86400, 24, now),
            destinations=tuple((d, breakers.get(d.destination, "closed")) for d in self.store.destinations()),
            engine=self.config.engine,
            device=_device(),
            workers=self.config.workers,
            memory=_memory(),
            rules=self.rules_status(),
        )

    def throughput(self, state: str, window_s: int, buckets: int, now: float | None = None) -> Throughput:
        end = now if now is not None else self.clock()
        size = window_s // buckets
        counts = self.store.transition_buckets(state, end - size * buckets, size, buckets)
        return Throughput(state, size, tuple(counts), end)

    # ---- studies ---------------------------------------------------------------------------------------
    def find_jobs(self, query: JobQuery) -> list[JobRow]:
        return self.store.jobs(query)

    def routes(self) -> list[str]:
        return self.store.routes()

    def trail(self, job_id: int) -> JobTrail | None:
        job = self.store.job(job_id)
        if job is None:
            return None
        instances = self.store.job_instances(job_id)
        return JobTrail(
            job=job,
            study_jobs=tuple(self.store.study_jobs(job.study_key)),
            instances=tuple(self._instance_trails(instances)),
            quarantine=tuple(q for q in self.store.quarantine(include_released=True) if q.job_id == job_id),
        )

    def _instance_trails(self, instances: list[InstanceRow]) -> list[InstanceTrail]:
        events = self.store.events([i.id for i in instances])
        by_instance: dict[int, list[StateEvent]] = {}
        for event in events:
            by_instance.setdefault(event.instance_id, []).append(event)
        return [
            InstanceTrail(i, tuple(by_instance.get(i.id, [])), durations(by_instance.get(i.id, [])))
            for i in instances
        ]

    # ---- quarantine ------------------------------------------------------------------------------------
    def quarantine(
        self, *, include_released: bool = False, kind: str = "", text: str = ""
    ) -> list[QuarantineRow]:
        return self.store.quarantine(include_released=include_released, kind=kind, text=text)

    def quarantine_detail(self, item_id: int) -> QuarantineDetail | None:
        item = self.store.quarantine_item(item_id)
        if item is None:
            return None
        trail = None
        if item.instance_id is not None:
            row = self.store.instance(item.instance_id)
            trail = self._instance_trails([row])[0] if row is not None else None
        return QuarantineDetail(item, trail, tuple(self.store.audit_log(target=f"quarantine:{item_id}")))

    def replay(self, item_id: int, actor: Actor, reason: str = "") -> str:
        """Release an item: pipeline items re-run (a follow-up job), forward items are re-sent."""
        return self._act(
            "replay", item_id, actor, reason, lambda: str(self.ledger.release_quarantine(item_id))
        )

    def discard(self, item_id: int, actor: Actor, reason: str) -> str:
        """Close an item without forwarding it (the instance is dropped); a reason is required."""
        if not reason.strip():
            raise InvalidInput("a discard needs a reason")
        return self._act(
            "discard", item_id, actor, reason, lambda: self.store.discard_quarantine(item_id, reason.strip())
        )

    def _act(self, action: str, item_id: int, actor: Actor, reason: str, do: Callable[[], str]) -> str:
        target = f"quarantine:{item_id}"
        if not actor.is_admin:
            self.store.audit(actor.name, action, target, reason, "denied")
            _count(action, "denied")
            raise PermissionDenied(f"{action} needs the admin role")
        try:
            new_state = do()
        except LookupError:
            _count(action, "not_found")
            raise
        self.store.audit(actor.name, action, target, reason.strip(), f"instance {new_state or '-'}")
        _count(action, "done")
        return new_state

    def audit_log(self, limit: int = 200) -> list[AuditRow]:
        return self.store.audit_log(limit)

    # ---- rules -----------------------------------------------------------------------------------------
    def rules_status(self) -> RulesStatus:
        if self._rules is None:  # the CLI: no service holds a validated rule set, and pydicom costs 0.3 s
            return self.rules_file_status()
        rules = self.rules()
        result, at, errors = ("loaded", None, ())
        if self.watcher is not None:
            result, at, errors = self.watcher.last_result
        file = self.config.rules_file.name if self.config.rules_file else ""
        return RulesStatus(rules.name, rules.sha256, file, len(rules.routes), result, at, tuple(errors))

    def rules_file_status(self) -> RulesStatus:
        """The configured rule file as it lies on disk, neither loaded nor validated (``rules check`` does
        that): sha256 of its bytes, and its name and route count as plain YAML says (stem and 0 when the
        YAML does not read). With includes, the rule set's sha256 covers them and differs from this one."""
        path = self.rules_path()
        raw = path.read_bytes()
        try:
            doc = yaml.safe_load(raw)
        except yaml.YAMLError:
            doc = None
        doc = doc if isinstance(doc, dict) else {}
        routes = doc.get("routes")
        name = str(doc.get("name") or path.stem)
        file = self.config.rules_file.name if self.config.rules_file else ""
        sha = hashlib.sha256(raw).hexdigest()
        count = len(routes) if isinstance(routes, list) else 0
        return RulesStatus(name, sha, file, count, "unchecked", None, (), str(path))

    def rules_path(self) -> Path:
        """The rule file in force (the shipped defaults when none is configured), found without importing
        dicom_rules (its import loads pydicom)."""
        if self.config.rules_file:
            return self.config.resolve(self.config.rules_file)
        spec = importlib.util.find_spec("dicom_rules")
        assert spec is not None and spec.origin is not None
        return Path(spec.origin).with_name("default.yaml")

    def rules_text(self) -> str:
        """The rule file in force as text (the shipped defaults when none is configured)."""
        return self.rules_path().read_text(encoding="utf-8")

    def check_rules(self, text: str) -> CheckResult:
        """Validate rule text without saving it; errors carry line:column of the pasted text."""
        from dicom_rules.loader import load_rules
        from dicom_rules.source import RulesError

        if len(text.encode("utf-8")) > MAX_RULES_BYTES:
            raise InvalidInput(f"rule text larger than {MAX_RULES_BYTES // 1024} KiB")
        with tempfile.TemporaryDirectory(prefix="vera-rules-check-") as tmp:
            path = Path(tmp) / (self.config.rules_file.name if self.config.rules_file else "rules.yaml")
            path.write_text(text, encoding="utf-8")
            try:
                rules = load_rules(path, default_engine=self.config.engine)
            except RulesError as exc:
                return CheckResult(False, tuple(_error_tuple(e) for e in exc.errors))
        warnings = tuple((0, 0, "warning", str(w)) for w in rules.warnings)
        return CheckResult(True, warnings, rules.name, rules.sha256, tuple(route_summary(rules)))

    def save_rules(self, text: str, actor: Actor) -> CheckResult:
        """Check, then atomically replace the configured rule file; the watcher reloads it."""
        if not actor.is_admin:
            self.store.audit(actor.name, "rules-save", "rules", "", "denied")
            _count("rules-save", "denied")
            raise PermissionDenied("saving rules needs the admin role")
        if self.config.rules_file is None:
            raise InvalidInput("no rules_file is configured: the shipped defaults cannot be edited here")
        result = self.check_rules(text)
        if not result.ok:
            return result
        path = self.config.resolve(self.config.rules_file)
        old = hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else "-"
        _atomic_write(path, text.encode("utf-8"))
        self.store.audit(actor.name, "rules-save", "rules", "", f"{old} -> {result.sha256[:16]}")
        _count("rules-save", "done")
        return result

    def explain(self, data: bytes, actor: Actor, calling_ae: str = "") -> Any:
        """Route decision and header before → after for an uploaded file, kept in memory only (admin only:
        the before values are the file's own patient data)."""
        from pydicom import dcmread
        from pydicom.errors import InvalidDicomError

        from dicom_rules.explain import explain

        if not actor.is_admin:
            raise PermissionDenied("explain shows patient data: it needs the admin role")
        if not data:
            raise InvalidInput("no file uploaded")
        if len(data) > MAX_UPLOAD_BYTES:
            raise InvalidInput(f"file larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB")
        try:
            ds = dcmread(BytesIO(data))
            ds.SOPClassUID  # noqa: B018 (a DICOM file names its class; anything else is refused here)
        except (InvalidDicomError, AttributeError, EOFError, ValueError, TypeError, KeyError) as exc:
            raise InvalidInput("not a DICOM file (Part 10 with SOP Class UID expected)") from exc
        return explain(ds, self.rules(), calling_ae=calling_ae, keys=self.keys)


def _count(action: str, outcome: str) -> None:
    """``vera_gateway_admin_actions_total``; prometheus_client is imported on the first action, not at the
    start of every read-only CLI command."""
    from gateway.ops.metrics import ADMIN_ACTIONS

    ADMIN_ACTIONS.labels(action=action, outcome=outcome).inc()


def durations(events: list[StateEvent]) -> StageDurations:
    """Time spent waiting, processing and forwarding, from the last pass through each state."""
    first = {}
    last = {}
    for e in events:
        first.setdefault(e.state, e.at)
        last[e.state] = e.at
    received = events[0].at if events else None
    started = last.get("processing")
    done = last.get("deidentified")
    sent = last.get("forwarded")

    def span(a: float | None, b: float | None) -> float | None:
        return b - a if a is not None and b is not None and b >= a else None

    return StageDurations(
        span(received, started), span(started, done), span(done, sent), span(received, sent)
    )


def route_summary(rules: RuleSet) -> list[tuple[str, str, str, str]]:
    """(name, when, then, pixels) per route, in order (what ``rules check`` prints)."""
    from gateway.core.jobs import describe_pixels

    out = []
    for route in rules.routes:
        d = route.decision
        when = "; ".join(c.describe() for c in route.conditions) or "(catch-all)"
        then = f"{d.action.value} {d.destination.name if d.destination else d.reason}"
        out.append(
            (route.name, when, then, describe_pixels(d.pixels) if d.action.value == "forward" else "-")
        )
    return out


def _error_tuple(error: Any) -> tuple[int, int, str, str]:
    text = error.message + (f" (hint: {error.hint})" if error.hint else "")
    return (error.loc.line, error.loc.column, error.severity, text)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _device() -> str:
    """CPU/GPU without importing torch here (the workers own it); reports CUDA when torch is loaded."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    if Path("/dev/nvidia0").exists():
        return "GPU present (workers pick it per engine)"
    return f"CPU ({os.cpu_count()} cores)"


def _memory() -> dict[str, int]:
    out: dict[str, int] = {}
    for path, keys in (("/proc/self/status", {"VmRSS": "rss"}), ("/proc/meminfo", _MEMINFO)):
        try:
            for line in Path(path).read_text().splitlines():
                name, _, value = line.partition(":")
                if name in keys:
                    out[keys[name]] = int(value.split()[0]) * 1024
        except OSError:
            continue
    return out


_MEMINFO = {"MemTotal": "total", "MemAvailable": "available"}
