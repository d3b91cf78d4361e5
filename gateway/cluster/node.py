"""One cluster node: `vera-gateway serve --role receive|forward|all` with a PostgreSQL ledger.

receive: the SCP and intake (C-STORE Success only after the object store took the bytes and the shared ledger
committed the row), plus the coordinator (grouping, queue reconciliation, stalled-job sweep) and, with a
bucket, the orphaned-object reconciler (:mod:`gateway.cluster.orphans`). forward: the
forwarder, which leases its outputs in the ledger. all: both, plus a worker thread. Study jobs run in
`vera-gateway worker` processes (``--role work`` starts one). Every node heart-beats into the ledger's
``nodes`` table and serves its own /metrics. A receiving node with a ``stow:`` section runs the STOW-RS
receiver beside the SCP (same intake); any node with a ``console:`` section serves the web console on the
cluster's ledger. A node never runs the single-machine crash recovery: other
nodes' jobs are running.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog

from anonymizer.keys import KeyRing, load_or_create_secret
from dicom_rules import RuleSet
from dicom_rules.watcher import RulesWatcher
from gateway.cluster.orphans import OrphanReconciler
from gateway.cluster.queue import Coordinator
from gateway.cluster.runner import JobRunner, run_worker
from gateway.core.config import GatewayConfig, load_rule_set
from gateway.core.forwarder import Forwarder
from gateway.core.intake import Intake
from gateway.core.ledger.models import ForwardOutcome, ForwardRecorded, OutputItem
from gateway.core.ledger.postgres import PostgresLedger, node_name
from gateway.core.objectstore import open_store
from gateway.core.scp import association_policy, start_scp
from gateway.core.service import purge_finished
from gateway.core.spool import ContentStore, atomic_write
from gateway.ops.metrics import set_queue_gauges, start_http
from gateway.ops.policy import AssociationGate

LOG = structlog.get_logger("gateway.cluster.node")


class Role(StrEnum):
    RECEIVE = "receive"
    WORK = "work"
    FORWARD = "forward"
    ALL = "all"


def open_ledger(config: GatewayConfig, role: str) -> PostgresLedger:
    assert config.ledger is not None
    return PostgresLedger(config.ledger, node=f"{role}@{node_name()}", lease_s=config.forward_lease_s)


class ForwardLedger:
    """The forwarder's view of the shared ledger: due outputs are *leased* to this node; with an object
    store, their objects are fetched into the local outbox folder the senders read, and dropped from it once
    their outcome is recorded. Every other call goes to the ledger."""

    def __init__(self, ledger: PostgresLedger, shared_outbox: Any | None, local_outbox: Path) -> None:
        self.ledger = ledger
        self.outbox = shared_outbox
        self.local = local_outbox

    def __getattr__(self, name: str) -> Any:
        return getattr(self.ledger, name)

    def due_outputs(self, limit: int = 500, exclude: Sequence[str] = ()) -> list[OutputItem]:
        items = self.ledger.lease_outputs(limit=limit, exclude=exclude)
        for item in items if self.outbox is not None else ():
            if not (self.local / item.out_path).exists():
                atomic_write(self.local / item.out_path, self.outbox.read(item.out_path))
        return items

    def record_forwarding(self, outcomes: Sequence[ForwardOutcome]) -> list[ForwardRecorded]:
        recorded = self.ledger.record_forwarding(outcomes)
        for outcome in outcomes if self.outbox is not None else ():
            with contextlib.suppress(FileNotFoundError):
                (self.local / outcome.item.out_path).unlink()
        return recorded


def rules_source(config: GatewayConfig) -> Callable[[], RuleSet]:
    """The rule set in force, as a callable: a configured rule file is watched and hot-reloaded (checked at
    each call, a stat), so every node applies an edit to its next job, batch or association."""
    if config.rules_file is None:
        rules = load_rule_set(config)
        return lambda: rules
    watcher = RulesWatcher(config.resolve(config.rules_file), default_engine=config.engine)

    def current() -> RuleSet:
        watcher.poll()
        return watcher.current()

    return current


class ClusterNode:
    def __init__(self, config: GatewayConfig, role: Role = Role.ALL) -> None:
        self.config, self.role = config, role
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.secret = load_or_create_secret(config.secret_path)
        self.ledger = open_ledger(config, role)
        self.rules = rules_source(config)
        self.spool = open_store(config, "spool")
        self.quarantine = open_store(config, "quarantine")
        self.outbox = open_store(config, "outbox")
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server: Any = None
        self.http: Any = None
        self.coordinator: Coordinator | None = None
        self.forwarder: Forwarder | None = None
        self.stow: Any = None  # gateway.core.stow.StowServer on a receiving node with a `stow:` section
        self.console: Any = None  # gateway.console.server.ConsoleServer on a node with a `console:` section
        self.gate: AssociationGate | None = None
        self._policy_of = id(self.rules())
        self.started_at = time.time()

    @property
    def receives(self) -> bool:
        return self.role in (Role.RECEIVE, Role.ALL)

    @property
    def forwards(self) -> bool:
        return self.role in (Role.FORWARD, Role.ALL)

    def start(self) -> ClusterNode:
        loops: list[tuple[str, Any]] = [("housekeeping", self._housekeeping)]
        if self.receives:
            intake = Intake(self.spool, self.quarantine, self.ledger, KeyRing(self.secret))  # type: ignore[arg-type]
            self.gate = AssociationGate(association_policy(self.config, self.rules()))
            self.server = start_scp(self.config, intake, self.rules(), gate=self.gate)
            if self.config.stow is not None:
                from gateway.core.stow import StowServer  # web stack only when a receiver is configured

                self.stow = StowServer(self.config.stow, intake, self.config.resolve).start()
            self.coordinator = Coordinator(self.config, self.ledger)
            loops.append(("coordinator", self.coordinator.run))
            if self.config.object_store is not None:  # receivers reconcile the bucket with the ledger
                orphans = OrphanReconciler(self.config.object_store, self.ledger)
                loops.append(("orphans", orphans.run))
        if self.role is Role.ALL:  # one node doing everything: a worker thread runs the study jobs too
            runner = JobRunner(self.config, self.ledger, self.spool, self.outbox, self.rules)
            runner.prepare(self.secret)
            loops.append(("worker", lambda stop: run_worker(self.config, runner, stop=stop)))
        if self.forwards:
            shared = None if isinstance(self.outbox, ContentStore) else self.outbox  # a folder: read in place
            view: Any = ForwardLedger(self.ledger, shared, self.config.outbox_dir)
            self.forwarder = Forwarder(self.config, view, self.rules)
            loops.append(("forwarder", self.forwarder.run))
        for name, target in loops:
            thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.config.metrics_port is not None:
            self.http = start_http(self.config.metrics_bind, self.config.metrics_port, self.health)
        if self.config.console is not None:
            self.console = self._start_console()
        LOG.info(
            "node.started",
            role=str(self.role),
            node=self.ledger.node,
            pid=os.getpid(),
            port=self.port if self.server else None,
        )
        return self

    def _start_console(self) -> Any:
        """The console reads and acts on the whole cluster's ledger; breaker states are this node's own
        forwarder's (none on a node that does not forward: breakers are per node, see the README)."""
        from gateway.console.server import ConsoleServer  # web stack imported only when configured
        from gateway.ops.admin import AdminService

        breakers = self.forwarder.breaker_states if self.forwarder is not None else None
        admin = AdminService(
            self.config, self.ledger, self.rules, breakers=breakers, keys=KeyRing(self.secret)
        )
        return ConsoleServer(admin, self.secret).start()

    def _follow_rules(self) -> None:
        """A rule file edit (hot-reloaded) may add sources: the receiver's association gate follows."""
        rules = self.rules()
        if self.gate is not None and id(rules) != self._policy_of:
            self.gate.update_policy(association_policy(self.config, rules))
            self._policy_of = id(rules)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def health(self) -> dict[str, bool]:
        return {
            "threads": all(t.is_alive() for t in self.threads),
            "scp": self.server is not None or not self.receives,
            "stow": self.stow is None or self.stow.thread.is_alive(),
            "console": self.console is None or self.console.thread.is_alive(),
        }

    def _housekeeping(self, stop: threading.Event) -> None:
        """Every 5 s: this node's heart-beat, the queue gauges, and retention (on forwarders)."""
        while not stop.is_set():
            try:
                self.ledger.heartbeat_node(str(self.role), self.started_at)
                self._follow_rules()
                set_queue_gauges(self.ledger.counts(), time.time())  # the cluster's, on every node's /metrics
                if self.forwards and self.config.retention_s is not None:  # forwarders purge (any may)
                    purge_finished(
                        self.ledger, self.spool, self.outbox, time.time() - self.config.retention_s
                    )
            except Exception as exc:
                LOG.warning("node.housekeeping_failed", error=type(exc).__name__)
            stop.wait(5.0)

    def stop(self) -> None:
        self.stop_event.set()
        if self.server is not None:
            self.server.shutdown()
        if self.stow is not None:
            self.stow.stop()
        for thread in self.threads:
            thread.join(timeout=10)
        if self.coordinator is not None:
            self.coordinator.close()
        if self.console is not None:
            self.console.stop()
        if self.http is not None:
            self.http.shutdown()
        self.ledger.shutdown()
        LOG.info("node.stopped")
