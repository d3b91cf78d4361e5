"""The forwarder: sends de-identified outputs to their destinations, with back-off, breaker and give-up.

Per destination: a batch goes out over one association; each instance that the destination stored becomes
``forwarded``; a failure schedules a retry with exponential back-off and jitter (``retry_waiting``); after
``give_up_s`` of failures the instance is quarantined (replayable). A circuit breaker per destination stops
hammering a peer that is down: after N consecutive failed batches it opens for ``breaker_reset_s``, then lets
one batch through (half-open). All outcomes of a tick are recorded in one ledger transaction. Time and
randomness are injected.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from dicom_rules import RuleSet
from gateway.core import faults
from gateway.core.config import ForwardSettings, GatewayConfig
from gateway.core.destinations import OutboundFile, Sender, SendResult, sender_for
from gateway.core.ledger import (
    Forwarded,
    ForwardGaveUp,
    ForwardOutcome,
    ForwardRecorded,
    ForwardRetry,
    Ledger,
    OutputItem,
)
from gateway.ops.logs import uid_hash
from gateway.ops.metrics import BREAKER_OPEN, FORWARD_FAILURES, FORWARDED, QUARANTINED

LOG = structlog.get_logger("gateway.forwarder")


def backoff_delay(attempts: int, settings: ForwardSettings, rng: random.Random) -> float:
    """Delay before attempt ``attempts + 1``: initial · 2^attempts, capped, ± jitter."""
    base = min(settings.backoff_max_s, settings.backoff_initial_s * (2 ** min(attempts, 30)))
    return max(0.0, base * (1 + settings.jitter * (2 * rng.random() - 1)))


@dataclass
class Breaker:
    """Consecutive-failure circuit breaker for one destination."""

    threshold: int
    reset_s: float
    failures: int = 0
    opened_at: float | None = None

    def allows(self, now: float) -> bool:
        return self.opened_at is None or now - self.opened_at >= self.reset_s

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        if self.failures >= self.threshold:
            self.opened_at = now

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None


class Forwarder:
    def __init__(
        self,
        config: GatewayConfig,
        ledger: Ledger,
        rules: Callable[[], RuleSet],
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.settings = config.forward
        self.ledger = ledger
        self.rules = rules
        self.clock = clock
        self.rng = rng or random.Random()
        self.breakers: dict[str, Breaker] = {}

    def _breaker(self, name: str) -> Breaker:
        if name not in self.breakers:
            self.breakers[name] = Breaker(self.settings.breaker_failures, self.settings.breaker_reset_s)
        return self.breakers[name]

    def breaker_states(self) -> dict[str, str]:
        """Per destination: closed, open, or half-open (open, but the reset time has passed)."""
        now = self.clock()
        return {
            name: "closed" if not b.is_open else ("half-open" if b.allows(now) else "open")
            for name, b in list(self.breakers.items())
        }

    def tick(self) -> int:
        """Send what is due and record every outcome in one ledger transaction; returns how many
        instances were forwarded. Outcomes are recorded even when a later batch raises."""
        outcomes: list[ForwardOutcome] = []
        try:
            for name, items in self._due_by_destination().items():
                breaker = self._breaker(name)
                if not breaker.allows(self.clock()):
                    continue
                size = self.settings.batch_size
                for start in range(0, len(items), size):
                    outcomes += self._send_batch(name, items[start : start + size], breaker)
                    if breaker.is_open:
                        break
        finally:
            forwarded = self._record(outcomes)
        return forwarded

    def _due_by_destination(self) -> dict[str, list[OutputItem]]:
        by_dest: dict[str, list[OutputItem]] = defaultdict(list)
        now = self.clock()
        blocked = [name for name, b in self.breakers.items() if not b.allows(now)]
        for item in self.ledger.due_outputs(limit=self.settings.batch_size * 4, exclude=blocked):
            by_dest[item.destination].append(item)
        return by_dest

    def _send_batch(self, name: str, items: list[OutputItem], breaker: Breaker) -> list[ForwardOutcome]:
        destination = self.rules().destinations.get(name)
        if destination is None:
            return [ForwardGaveUp(item, "unknown-destination") for item in items]
        sender: Sender = sender_for(destination, self.config)
        files = [
            OutboundFile(i.instance_id, self.config.outbox_dir / i.out_path, i.out_sop_uid) for i in items
        ]
        results = sender.send(files)
        faults.hold("forward.after_send")
        breaker.record(any(r.ok for r in results) or not results, self.clock())
        BREAKER_OPEN.labels(destination=name).set(1 if breaker.is_open else 0)
        by_id = {r.instance_id: r for r in results}
        outcomes: list[ForwardOutcome] = []
        for item in items:
            result = by_id.get(item.instance_id, SendResult(item.instance_id, False, "no-result"))
            outcomes.append(Forwarded(item) if result.ok else self._failed(name, item, result.reason))
        return outcomes

    def _failed(self, name: str, item: OutputItem, reason: str) -> ForwardOutcome:
        FORWARD_FAILURES.labels(destination=name).inc()
        now = self.clock()
        first = item.first_failure_at if item.first_failure_at is not None else now
        if now - first >= self.settings.give_up_s:
            return ForwardGaveUp(item, f"forward-gave-up:{reason}")
        return ForwardRetry(item, reason, backoff_delay(item.attempts, self.settings, self.rng))

    def _record(self, outcomes: list[ForwardOutcome]) -> int:
        """One transaction for the tick; metrics and logs only for outcomes whose fence held."""
        if not outcomes:
            return 0
        recorded = {r.instance_id: r for r in self.ledger.record_forwarding(outcomes)}
        for outcome in outcomes:
            applied = recorded.get(outcome.item.instance_id)
            if applied is None:  # the instance moved on meanwhile (replayed, or another node recorded it)
                LOG.info("instance.forward_outcome_stale", instance_id=outcome.item.instance_id)
            else:
                _report(outcome, applied)
        return sum(1 for o in outcomes if isinstance(o, Forwarded) and o.item.instance_id in recorded)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                LOG.exception("forwarder.tick_failed")
            stop.wait(self.config.poll_interval_s)


def _report(outcome: ForwardOutcome, applied: ForwardRecorded) -> None:
    item = outcome.item
    if isinstance(outcome, Forwarded):
        FORWARDED.labels(destination=item.destination).inc()
        LOG.info(
            "instance.forwarded",
            instance_id=item.instance_id,
            destination=item.destination,
            out_uid_hash=uid_hash(item.out_sop_uid),
            attempts=item.attempts + 1,
        )
    elif isinstance(outcome, ForwardRetry):
        LOG.warning(
            "instance.retry_waiting",
            instance_id=item.instance_id,
            destination=item.destination,
            reason=outcome.reason,
            attempts=item.attempts + 1,
            delay_s=round(outcome.delay_s, 3),
        )
    else:
        QUARANTINED.labels(stage="forward").inc()
        LOG.warning(
            "instance.quarantined",
            instance_id=item.instance_id,
            reason=outcome.reason,
            quarantine_id=applied.quarantine_id,
        )
