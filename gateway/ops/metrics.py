"""Prometheus metrics and the small HTTP endpoint that serves ``/metrics`` and ``/healthz``.

Metrics live in prometheus_client's default registry (the association policy registers there too). Labels
carry states, stages, destinations and reasons only, never patient data.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

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

HealthCheck = Callable[[], dict[str, bool]]


class _Handler(BaseHTTPRequestHandler):
    health: HealthCheck = staticmethod(lambda: {"ok": True})  # type: ignore[assignment]

    def do_GET(self) -> None:
        if self.path.startswith("/metrics"):
            self._send(200, CONTENT_TYPE_LATEST, generate_latest())
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


def start_http(bind: str, port: int, health: HealthCheck) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz in a daemon thread; returns the server (see ``server_address``)."""
    handler = type("MetricsHandler", (_Handler,), {"health": staticmethod(health)})
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
