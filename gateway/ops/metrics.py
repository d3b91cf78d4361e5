"""Prometheus metrics and the small HTTP endpoint that serves ``/metrics`` and ``/healthz``.

Metrics live in prometheus_client's default registry (the association policy registers there too). Labels
carry states, stages, destinations and reasons only, never patient data.

Receiver processes (``receive_processes`` > 1, gateway/core/receivers.py) count in their own registries: on
each scrape the main process asks them for their counters and histograms (:func:`snapshot`) and
:class:`MergedRegistry` adds those to its own, so ``/metrics`` reads as for one process. Receivers set no
gauges (the association and pending-connection gauges live where the gate and the doorman run: the main
process).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample

RECEIVED = Counter("vera_gateway_received_total", "C-STORE requests by outcome", ["outcome"])
FORWARDED = Counter("vera_gateway_forwarded_total", "Instances forwarded, by destination", ["destination"])
FORWARD_FAILURES = Counter(
    "vera_gateway_forward_failures_total", "Failed forward attempts (each one is retried)", ["destination"]
)
QUARANTINED = Counter("vera_gateway_quarantined_total", "Items quarantined, by stage", ["stage"])
QUEUE_DEPTH = Gauge("vera_gateway_queue_depth", "Instances per ledger state", ["state"])
OLDEST_AGE = Gauge("vera_gateway_oldest_item_age_seconds", "Age of the oldest instance per state", ["state"])
BREAKER_OPEN = Gauge(
    "vera_gateway_breaker_open", "1 while a destination's circuit breaker is open", ["destination"]
)
ADMIN_ACTIONS = Counter(
    "vera_gateway_admin_actions_total",
    "Admin actions (replay, discard, rules-save) from the CLI or console, by outcome",
    ["action", "outcome"],
)
STOW_REQUESTS = Counter(
    "vera_gateway_stow_requests_total", "STOW-RS requests by HTTP status and reason", ["status", "reason"]
)
SPOOL_ORPHANS = Gauge(
    "vera_gateway_spool_orphans", "Spooled files no ledger row refers to (never acknowledged), at start-up"
)
OBJECT_ORPHANS = Gauge(
    "vera_gateway_object_orphans",
    "Objects in the bucket older than the grace period that no ledger row references, at the last scan",
    ["area"],
)
OBJECT_ORPHANS_DELETED = Counter(
    "vera_gateway_object_orphans_deleted_total",
    "Orphaned objects deleted after orphan_delete_after_s",
    ["area"],
)
STAGE_SECONDS = Histogram(
    "vera_gateway_stage_seconds",
    "Stage latency",
    ["stage"],
    buckets=(0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)

RECEIVERS = Gauge("vera_gateway_receiver_processes", "Receiver processes ready to take associations")

HealthCheck = Callable[[], dict[str, bool]]
# (family name, type, [(sample name, labels, value)]) per counter and histogram family of one process
Snapshot = list[tuple[str, str, list[tuple[str, dict[str, str], float]]]]
ADDITIVE = ("counter", "histogram")


def snapshot() -> Snapshot:
    """This process's counters and histograms (what a receiver process adds to the main process's)."""
    return [
        (m.name, m.type, [(s.name, s.labels, s.value) for s in m.samples if not s.name.endswith("_created")])
        for m in REGISTRY.collect()
        if m.type in ADDITIVE
    ]


class MergedRegistry:
    """The default registry with the receiver processes' counters and histograms added (``extra`` returns
    their snapshots, live and retired); anything to ``generate_latest``."""

    def __init__(self, extra: Callable[[], list[Snapshot]]) -> None:
        self.extra = extra

    def collect(self) -> Any:
        added: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        types: dict[str, str] = {}
        for snap in self.extra():
            for name, kind, samples in snap:
                types[name] = kind
                family = added.setdefault(name, {})
                for sample, labels, value in samples:
                    key = (sample, tuple(sorted(labels.items())))
                    family[key] = family.get(key, 0.0) + value
        for metric in REGISTRY.collect():
            extra = added.pop(metric.name, None) if metric.type in ADDITIVE else None
            yield _with(metric, extra) if extra else metric
        for name, extra in added.items():  # families only receivers have
            yield _with(Metric(name, name, types[name]), extra)


def _with(metric: Metric, extra: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Metric:
    merged = Metric(metric.name, metric.documentation, metric.type, metric.unit)
    for s in metric.samples:
        value = s.value + extra.pop((s.name, tuple(sorted(s.labels.items()))), 0.0)
        merged.samples.append(Sample(s.name, s.labels, value, s.timestamp, s.exemplar))
    merged.samples += [Sample(name, dict(labels), value) for (name, labels), value in extra.items()]
    return merged


class _Handler(BaseHTTPRequestHandler):
    health: HealthCheck = staticmethod(lambda: {"ok": True})  # type: ignore[assignment]
    registry: Any = REGISTRY

    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(type(self).registry))
        elif self.path.startswith("/healthz"):
            checks = type(self).health()
            ok = all(checks.values())
            self._send(200 if ok else 503, "application/json", json.dumps({"ok": ok, **checks}).encode())
        else:
            self._send(404, "text/plain", b"not found\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # silence stdlib access logs
        return


def start_http(bind: str, port: int, health: HealthCheck, registry: Any = REGISTRY) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz in a daemon thread; returns the server (see ``server_address``)."""
    handler = type("MetricsHandler", (_Handler,), {"health": staticmethod(health), "registry": registry})
    server = ThreadingHTTPServer((bind, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def set_queue_gauges(counts: Any, now: float) -> None:
    """Queue depth and oldest age per instance state, from a ledger's :class:`LedgerCounts`."""
    from gateway.core.ledger.models import InstanceState, StateCount

    for state in InstanceState:
        count = counts.instances.get(state, StateCount(0, None))
        QUEUE_DEPTH.labels(state=state.value).set(count.count)
        oldest = count.oldest_updated_at
        OLDEST_AGE.labels(state=state.value).set(now - oldest if oldest else 0)
