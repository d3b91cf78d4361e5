"""Wiring: one running gateway = SCP + intake + scheduler thread + forwarder thread + metrics endpoint.

Dependencies are built here and passed in; tests build a :class:`Service` in-process with their own
config, rule set, clock or spool writer (the fault-injection seam for disk-full tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from anonymizer.keys import KeyRing, load_or_create_secret
from dicom_rules import RuleSet
from dicom_rules.watcher import RulesWatcher
from gateway.core.admission import ByteBudget
from gateway.core.config import GatewayConfig, load_rule_set
from gateway.core.forwarder import Forwarder
from gateway.core.intake import open_intake
from gateway.core.ledger import Ledger, open_ledger
from gateway.core.recovery import RECOVERED_REASON, RunMarker, boot_id, os_crashed, recover_spool
from gateway.core.scheduler import Scheduler
from gateway.core.scp import association_policy, start_scp
from gateway.core.spool import ContentStore, Writer, write_all
from gateway.ops.metrics import REGISTRY, SPOOL_ORPHANS, MergedRegistry, set_queue_gauges, start_http
from gateway.ops.policy import AssociationGate

LOG = structlog.get_logger("gateway.service")


def purge_finished(ledger: Ledger, spool: Any, outbox: Any, before: float) -> int:
    """Retention: the ledger forgets the files of instances finished before ``before``, then they are
    deleted from the spool and outbox stores (folders or the cluster's object store)."""
    purged = ledger.purge_finished(before)
    for files in purged:
        spool.discard(files.spool_path)
        if files.out_path:
            outbox.discard(files.out_path)
    if purged:
        LOG.info("retention.purged", instances=len(purged))
    return len(purged)


class Service:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        rules: RuleSet | None = None,
        spool_writer: Writer = write_all,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.secret = load_or_create_secret(config.secret_path)
        self.keys = KeyRing(self.secret)
        self.watcher: RulesWatcher | None = None
        if rules is None and config.rules_file is not None:
            self.watcher = RulesWatcher(config.resolve(config.rules_file), default_engine=config.engine)
        self._rules = rules if rules is not None or self.watcher is not None else load_rule_set(config)
        self.ledger = open_ledger(config, clock=clock)
        self.intake = open_intake(config, self.keys, spool_writer, clock)
        self.spool, self.quarantine = self.intake.spool, self.intake.quarantine
        self.outbox = ContentStore(config.outbox_dir)
        self.run_marker = RunMarker(config.data_dir / "run.json")
        self.scheduler = Scheduler(config, self.ledger, self.rules, self.secret)
        self.forwarder = Forwarder(config, self.ledger, self.rules, clock=clock)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.server: Any = None
        self.tls_server: Any = None
        self.gate: AssociationGate | None = None
        self.http: Any = None
        self.stow: Any = None  # gateway.core.stow.StowServer when the config has a stow: section
        self.console: Any = None  # gateway.console.server.ConsoleServer when the config has `console:`
        self.receivers: Any = None  # gateway.core.receivers.ReceiverPool with receive_processes > 1

    def rules(self) -> RuleSet:
        """The rule set in force (hot-reloaded from the rules file when one is configured)."""
        if self.watcher is not None:
            return self.watcher.current()
        assert self._rules is not None
        return self._rules

    def set_rules(self, rules: RuleSet) -> None:
        """Swap the rule set atomically; the next job and forward batch use it."""
        self._rules = rules
        LOG.info("rules.swapped", name=rules.name, sha256=rules.sha256[:16])

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def metrics_port(self) -> int | None:
        return int(self.http.server_address[1]) if self.http is not None else None

    def start(self) -> Service:
        for store in (self.spool, self.quarantine, self.outbox):
            store.clean_temp_files()
        recovered = self.ledger.recover()
        current_boot = boot_id()
        after_os_crash = os_crashed(self.run_marker.previous(), current_boot)
        self.run_marker.write(clean=False, current_boot=current_boot)
        spool = recover_spool(
            self.spool, self.ledger, lambda rel: self.intake.recover(rel, RECOVERED_REASON), after_os_crash
        )
        SPOOL_ORPHANS.set(spool["spool_orphans"])
        LOG.info(
            "service.recovered",
            os_crash=after_os_crash,
            **spool,
            jobs_requeued=recovered.jobs_requeued,
            instances_requeued=recovered.instances_requeued,
        )
        self.gate = gate = AssociationGate(association_policy(self.config, self.rules()))  # both listeners
        budget = ByteBudget(self._budget_share())  # received bytes, both listeners together
        if self.config.receive_processes > 1:
            from gateway.core.receivers import ReceiverPool

            share, ledger = self._budget_share(), self.intake.ledger
            self.receivers = ReceiverPool(self.config, gate.release, share, ledger).start()
        self.server = start_scp(
            self.config, self.intake, self.rules(), gate=gate, budget=budget, receivers=self.receivers
        )
        if self.config.tls is not None:
            ctx = self.config.tls.context(self.config.resolve)
            self.tls_server = start_scp(
                self.config,
                self.intake,
                self.rules(),
                port=self.config.tls.port,
                ssl_context=ctx,
                gate=gate,
                budget=budget,
            )
        if self.config.stow is not None:
            from gateway.core.stow import StowServer  # web stack only when a receiver is configured

            self.stow = StowServer(self.config.stow, self.intake, self.config.resolve).start()
        self.scheduler.warm_up()
        for name, target in (
            ("scheduler", self.scheduler.run),
            ("forwarder", self.forwarder.run),
            ("gauges", self._gauges),
        ):
            thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
            thread.start()
            self.threads.append(thread)
        if self.config.metrics_port is not None:
            registry = MergedRegistry(self.receivers.snapshots) if self.receivers is not None else REGISTRY
            self.http = start_http(self.config.metrics_bind, self.config.metrics_port, self.health, registry)
        if self.config.console is not None:
            self.console = self._start_console()
        LOG.info("service.started", port=self.port, metrics_port=self.metrics_port, rules=self.rules().name)
        return self

    def _budget_share(self) -> int:
        """``max_inflight_bytes``, or with receiver processes an equal share of it for each of them and one
        for this process's own listeners (TLS, which stays here)."""
        shares = self.config.receive_processes + 1 if self.config.receive_processes > 1 else 1
        return max(4096, self.config.max_inflight_bytes // shares)

    def _start_console(self) -> Any:
        from gateway.console.server import ConsoleServer  # web stack imported only when configured
        from gateway.ops.admin import AdminService

        admin = AdminService(
            self.config,
            self.ledger,
            self.rules,
            watcher=self.watcher,
            breakers=self.breaker_states,
            keys=self.keys,
        )
        return ConsoleServer(admin, self.secret).start()

    def breaker_states(self) -> dict[str, str]:
        """Per destination: closed, open, or half-open (open, but the reset time has passed)."""
        return self.forwarder.breaker_states()

    def purge(self, before: float) -> int:
        """Delete spool and outbox files of instances finished before ``before`` (retention)."""
        return purge_finished(self.ledger, self.spool, self.outbox, before)

    def count_spool_orphans(self) -> int:
        """Spool files without a ledger row: written, then the service died (or the ledger refused) before
        Success was sent. The sender re-sends them (same bytes, same file); they are counted, never used."""
        known = self.ledger.spool_paths()
        root = self.config.spool_dir
        orphans = sum(1 for p in root.glob("*/*.dcm") if str(p.relative_to(root)) not in known)
        SPOOL_ORPHANS.set(orphans)
        return orphans

    def health(self) -> dict[str, bool]:
        return {
            "scp": self.server is not None,
            "receivers": self.receivers is None or self.receivers.ready() == self.config.receive_processes,
            "stow": self.config.stow is None or (self.stow is not None and self.stow.thread.is_alive()),
            "console": self.config.console is None
            or (
                self.console is not None
                and self.console.thread is not None
                and self.console.thread.is_alive()
            ),
            "threads": all(t.is_alive() for t in self.threads),
        }

    def _gauges(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.update_gauges()
                if self.watcher is not None and self.watcher.poll() and self.gate is not None:
                    self.gate.update_policy(association_policy(self.config, self.rules()))  # new sources
                if self.config.retention_s is not None:
                    self.purge(time.time() - self.config.retention_s)
            except Exception:
                LOG.exception("service.gauges_failed")
            stop.wait(1.0)

    def update_gauges(self) -> None:
        set_queue_gauges(self.ledger.counts(), time.time())

    def stop(self) -> None:
        self.stop_event.set()
        for server in (self.server, self.tls_server):
            if server is not None:
                server.shutdown()
        if self.stow is not None:
            self.stow.stop()
        for thread in self.threads:
            thread.join(timeout=10)
        self.scheduler.shutdown()
        if self.console is not None:
            self.console.stop()
        if self.http is not None:
            self.http.shutdown()
        self.run_marker.write(clean=True, current_boot=boot_id())
        LOG.info("service.stopped")

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
