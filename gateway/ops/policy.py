"""Association policy: who may open an association with the gateway, and how many at once.

- :class:`AssociationPolicy` is pure: calling AE title + peer address + called AE title → admit or a
  :class:`Refusal` (with the A-ASSOCIATE-RJ result/source/diagnostic of PS3.8 §9.3.4).
- :class:`AssociationGate` adds the live counts (overall and per source address), thread-safe, and binds
  to a pynetdicom SCP with :meth:`AssociationGate.evt_handlers`: EVT_REQUESTED decides (and rejects before
  presentation-context negotiation), EVT_CONN_CLOSE frees the slot (it fires after release, abort and
  network errors alike, unlike EVT_RELEASED).
- :func:`configure_ae` applies the ACSE/DIMSE/idle/connect timeouts and the maximum PDU size.

Every refusal is logged with the AE titles, peer address and reason (machine identifiers, never patient
data) and counted in ``vera_gateway_association_refusals_total{reason}``.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from dicom_rules.decision import ANY_AE, Source
from dicom_rules.ruleset import RuleSet

LOG = structlog.get_logger(__name__)

REFUSALS = Counter(
    "vera_gateway_association_refusals_total",
    "Associations (and TLS handshakes) refused by the gateway, by reason",
    ["reason"],
)
ACTIVE = Gauge("vera_gateway_associations_active", "Associations admitted by the policy and still open")


class RefusalReason(StrEnum):
    CALLING_AE_NOT_ALLOWED = "calling_ae_not_allowed"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"
    CALLED_AE_NOT_RECOGNISED = "called_ae_not_recognised"
    TOO_MANY_ASSOCIATIONS = "too_many_associations"
    TOO_MANY_FROM_SOURCE = "too_many_from_source"
    TLS_HANDSHAKE = "tls_handshake"
    POLICY_ERROR = "policy_error"


# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 Table 9-21
_REJECT_CODES: dict[RefusalReason, tuple[int, int, int]] = {
    RefusalReason.CALLING_AE_NOT_ALLOWED: (0x01, 0x01, 0x03),  # permanent, service-user, calling AE
    RefusalReason.ADDRESS_NOT_ALLOWED: (0x01, 0x01, 0x03),
    RefusalReason.CALLED_AE_NOT_RECOGNISED: (0x01, 0x01, 0x07),  # permanent, service-user, called AE
    RefusalReason.TOO_MANY_ASSOCIATIONS: (0x02, 0x03, 0x02),  # transient, provider, local limit
    RefusalReason.TOO_MANY_FROM_SOURCE: (0x02, 0x03, 0x02),
}


@dataclass(frozen=True)
class Refusal:
    reason: RefusalReason
    detail: str = ""

    @property
    def reject_codes(self) -> tuple[int, int, int]:
        return _REJECT_CODES.get(self.reason, (0x01, 0x01, 0x01))


@dataclass(frozen=True)
class AssociationLimits:
    """Numbers of the association policy. Timeouts in seconds; ``idle_timeout_s`` is pynetdicom's
    network timeout (an open association with no traffic for that long is released)."""

    max_associations: int = 16
    max_per_source: int = 4
    acse_timeout_s: float = 30.0
    dimse_timeout_s: float = 60.0
    idle_timeout_s: float = 120.0
    connection_timeout_s: float = 10.0
    max_pdu_bytes: int = 262_144  # 0 means unlimited (not recommended on an open network)

    def __post_init__(self) -> None:
        if self.max_associations < 1 or self.max_per_source < 1:
            raise ValueError("max_associations and max_per_source must be at least 1")
        if self.max_pdu_bytes and self.max_pdu_bytes < 4096:
            raise ValueError("max_pdu_bytes must be 0 (unlimited) or at least 4096")
        timeouts = (self.acse_timeout_s, self.dimse_timeout_s, self.idle_timeout_s, self.connection_timeout_s)
        if min(timeouts) <= 0:
            raise ValueError("timeouts must be positive")


def _canonical(source: Source) -> Source:
    """The source with its CIDRs normalised (host bits cleared), so matching never fails at call time."""
    nets = tuple(str(ipaddress.ip_network(cidr, strict=False)) for cidr in source.networks)
    return Source(source.ae_title.strip(), nets)


@dataclass(frozen=True)
class AssociationPolicy:
    """Allow-list + called-AE check + limits. No sources means any calling AE from any address (only
    sensible on the default loopback bind)."""

    sources: tuple[Source, ...] = ()
    called_ae_titles: frozenset[str] = frozenset()  # empty: the called AE title is not checked
    limits: AssociationLimits = field(default_factory=AssociationLimits)

    def __post_init__(self) -> None:
        try:
            sources = tuple(_canonical(s) for s in self.sources)
        except ValueError as exc:
            raise ValueError(f"invalid source network in the allow-list: {exc}") from exc
        object.__setattr__(self, "sources", sources)
        object.__setattr__(self, "called_ae_titles", frozenset(t.strip() for t in self.called_ae_titles))

    @property
    def is_open(self) -> bool:
        return not self.sources

    def check_caller(self, calling_ae: str, called_ae: str, peer_ip: str) -> Refusal | None:
        """Pure decision on who is calling; ``None`` admits. Matching is the rule language's own
        (:meth:`Source.allows`), so the gate and ``RuleSet.decide`` never disagree about a sender."""
        calling, called = calling_ae.strip(), called_ae.strip()
        if self.called_ae_titles and called not in self.called_ae_titles:
            return Refusal(RefusalReason.CALLED_AE_NOT_RECOGNISED, f"called AE {called!r}")
        if self.is_open:
            return None
        candidates = [s for s in self.sources if s.ae_title in (calling, ANY_AE)]  # "*": any AE title
        if not candidates:
            return Refusal(RefusalReason.CALLING_AE_NOT_ALLOWED, f"calling AE {calling!r}")
        if not any(s.allows(calling, peer_ip) for s in candidates):
            return Refusal(RefusalReason.ADDRESS_NOT_ALLOWED, f"calling AE {calling!r} from {peer_ip}")
        return None


def policy_from_rules(
    rules: RuleSet, limits: AssociationLimits | None = None, called_ae_titles: Iterable[str] = ()
) -> AssociationPolicy:
    """The policy from the rule file's ``sources`` and the service config's limits."""
    return AssociationPolicy(tuple(rules.sources), frozenset(called_ae_titles), limits or AssociationLimits())


def count_refusal(reason: RefusalReason | str, **context: str) -> None:
    """Log and count one refusal. ``context`` holds AE titles/addresses only, never dataset content."""
    reason = RefusalReason(reason)
    REFUSALS.labels(reason=reason.value).inc()
    LOG.warning("association_refused", reason=reason.value, **context)


class AssociationGate:
    """Live association accounting on top of an :class:`AssociationPolicy`. Thread-safe."""

    def __init__(self, policy: AssociationPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._open: dict[int, str] = {}  # id(assoc) → peer ip
        self._per_source: Tally[str] = Tally()

    def admit(self, key: int, calling_ae: str, called_ae: str, peer_ip: str) -> Refusal | None:
        """Decide and, when admitted, take a slot for ``key`` until :meth:`release`."""
        with self._lock:
            policy = self.policy
        refusal = policy.check_caller(calling_ae, called_ae, peer_ip)
        limits = policy.limits
        with self._lock:
            if refusal is None and len(self._open) >= limits.max_associations:
                refusal = Refusal(RefusalReason.TOO_MANY_ASSOCIATIONS, f"{len(self._open)} open")
            if refusal is None and self._per_source[peer_ip] >= limits.max_per_source:
                refusal = Refusal(
                    RefusalReason.TOO_MANY_FROM_SOURCE, f"{peer_ip} has {limits.max_per_source}"
                )
            if refusal is None:
                self._open[key] = peer_ip
                self._per_source[peer_ip] += 1
                ACTIVE.inc()
        if refusal is not None:
            count_refusal(
                refusal.reason, calling_ae=calling_ae.strip(), peer_ip=peer_ip, detail=refusal.detail
            )
        return refusal

    def update_policy(self, policy: AssociationPolicy) -> None:
        """Swap in a new policy (rules reloaded): new callers are judged by it; open associations stay."""
        with self._lock:
            self.policy = policy
        LOG.info("association_policy_updated", sources=len(policy.sources), open_policy=policy.is_open)

    def release(self, key: int) -> None:
        with self._lock:
            peer_ip = self._open.pop(key, None)
            if peer_ip is None:
                return
            self._per_source[peer_ip] -= 1
            if self._per_source[peer_ip] <= 0:
                del self._per_source[peer_ip]
            ACTIVE.dec()

    def active(self, peer_ip: str | None = None) -> int:
        with self._lock:
            return len(self._open) if peer_ip is None else self._per_source.get(peer_ip, 0)

    def evt_handlers(self) -> list[tuple[Any, Callable[..., Any]]]:
        """Handlers to pass to ``AE.start_server(evt_handlers=...)`` (alongside the SCP's own)."""
        from pynetdicom import evt

        return [(evt.EVT_REQUESTED, self.on_requested), (evt.EVT_CONN_CLOSE, self.on_conn_close)]

    def on_requested(self, event: Any) -> None:
        """Decider: reject the A-ASSOCIATE-RQ before negotiation when the policy says no. pynetdicom
        swallows handler exceptions, so an internal error here rejects (fails closed) instead."""
        assoc = event.assoc
        try:
            rq = assoc.requestor.primitive
            calling, called = str(rq.calling_ae_title), str(rq.called_ae_title)
            refusal = self.admit(id(assoc), calling, called, str(assoc.requestor.address))
        except Exception:
            LOG.exception("association_policy_error")
            refusal = Refusal(RefusalReason.POLICY_ERROR)
            count_refusal(refusal.reason)
        if refusal is not None:
            reject_association(assoc, refusal)

    def on_conn_close(self, event: Any) -> None:
        self.release(id(event.assoc))


def reject_association(assoc: Any, refusal: Refusal) -> None:
    """Send A-ASSOCIATE-RJ from inside EVT_REQUESTED; pynetdicom then skips negotiation and closes."""
    from pynetdicom import evt

    assoc.acse.send_reject(*refusal.reject_codes)
    evt.trigger(assoc, evt.EVT_REJECTED, {})
    assoc.kill()


def configure_ae(ae: Any, limits: AssociationLimits) -> None:
    """Apply timeouts and PDU size to a pynetdicom AE (SCP or SCU). The gate does the counting, so
    pynetdicom's own limit is set high enough never to reject first."""
    ae.acse_timeout = limits.acse_timeout_s
    ae.dimse_timeout = limits.dimse_timeout_s
    ae.network_timeout = limits.idle_timeout_s
    ae.connection_timeout = limits.connection_timeout_s
    ae.maximum_pdu_size = limits.max_pdu_bytes
    ae.maximum_associations = max(int(ae.maximum_associations), limits.max_associations + 1)
