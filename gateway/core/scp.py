"""The SCP: a pynetdicom AE accepting C-ECHO and C-STORE of photo SOP classes in every listed syntax.

Handlers are plain functions bound to events with their dependencies passed in. The association setup
(who may call, limits, timeouts, TLS) sits in :func:`association_handlers` and :func:`start_scp`'s
``ssl_context`` so the operations code (``gateway.ops.policy``, ``gateway.ops.tls``) plugs in without touching
the store path.
"""

from __future__ import annotations

import socket
import ssl
from typing import TYPE_CHECKING, Any

import structlog
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from dicom_rules import RuleSet
from dicom_rules.decision import Source
from gateway.core.admission import AdmissionLimits, AdmittedServer, ByteBudget
from gateway.core.config import GatewayConfig
from gateway.core.intake import OUT_OF_RESOURCES, Caller, Intake, StoreRequest
from gateway.core.lean_scp import LeanServer, Setup
from gateway.core.negotiation import Negotiations
from gateway.core.part10 import encoded_file
from gateway.core.pdu_guard import was_drained
from gateway.ops.policy import AssociationGate, AssociationLimits, AssociationPolicy, configure_ae

if TYPE_CHECKING:
    from gateway.core.receivers import ReceiverPool

LOG = structlog.get_logger("gateway.scp")

PHOTO_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.77.1.4": "VL Photographic Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.77.1.7": "Dermoscopic Photography Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "Ophthalmic Photography 8 Bit Image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "Ophthalmic Photography 16 Bit Image",
}
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"  # store and route only

UNCOMPRESSED = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent by old devices)
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
)
COMPRESSED = (
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.51",  # JPEG Extended (Process 2 & 4)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless (Process 14)
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
)
VIDEO = (
    "1.2.840.10008.1.2.4.100",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.101",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 HP@4.1
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main
)
IMAGE_TRANSFER_SYNTAXES = UNCOMPRESSED + COMPRESSED


def set_nodelay(event: Any) -> None:
    """Observer on EVT_CONN_OPEN: disable Nagle (avoids the 40 ms delayed-ACK stall per round trip)."""
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            LOG.warning("scp.nodelay_failed")


def handle_echo(event: Any) -> int:
    return 0x0000


def handle_store(event: Any, intake: Intake) -> int | Dataset:
    """Decider: the status comes from the intake; an internal error answers 0xA700 (retry later)."""
    try:
        req = event.request
        requestor = event.assoc.requestor
        caller = Caller(str(requestor.ae_title).strip(), str(requestor.address))
        sock = event.assoc.dul.socket
        if was_drained(sock, req.DataSet):
            return too_large(intake, caller, sock._guard.limits.max_dataset_bytes)
        request = StoreRequest(
            data=encoded_file(event),
            sop_class_uid=str(req.AffectedSOPClassUID),
            sop_instance_uid=str(req.AffectedSOPInstanceUID),
            caller=caller,
        )
        return intake.receive(request)
    except Exception as exc:
        LOG.error("scp.store_failed", error=type(exc).__name__)
        return OUT_OF_RESOURCES


def too_large(intake: Intake, caller: Caller, limit_bytes: int) -> Dataset:
    """The failure answer to a dataset above ``max_dataset_bytes``, with the limit in its Error Comment."""
    status = Dataset()
    status.Status = intake.refuse_too_large(caller, limit_bytes)
    status.ErrorComment = f"Data set larger than this receiver's limit ({limit_bytes} bytes)"[:64]
    return status


def build_ae(config: GatewayConfig) -> AE:
    """The listening AE with every accepted presentation context and the config's limits."""
    ae = AE(ae_title=config.ae_title)
    ae.add_supported_context(Verification)
    for sop_class in PHOTO_SOP_CLASSES:
        ae.add_supported_context(sop_class, list(IMAGE_TRANSFER_SYNTAXES))
    ae.add_supported_context(VIDEO_PHOTOGRAPHIC, list(IMAGE_TRANSFER_SYNTAXES + VIDEO))
    configure_ae(ae, association_limits(config))
    # The gate and the doorman do the counting; pynetdicom's own limit only has to stay out of their way
    # (associations refused by the gate still live a moment as threads).
    ae.maximum_associations = 2 * (config.max_associations + config.max_pending_connections)
    return ae


def admission_limits(config: GatewayConfig) -> AdmissionLimits:
    return AdmissionLimits(
        request_timeout_s=config.admission_timeout_s,
        max_pending=config.max_pending_connections,
        max_pending_per_source=config.max_pending_per_source,
        max_request_bytes=config.max_request_pdu,
        max_pdu_bytes=config.max_pdu,
        pdu_timeout_s=config.network_timeout_s,
        max_dataset_bytes=config.max_dataset_bytes,
        max_inflight_bytes=config.max_inflight_bytes,
    )


def association_limits(config: GatewayConfig) -> AssociationLimits:
    return AssociationLimits(
        max_associations=config.max_associations,
        max_per_source=config.max_associations_per_source,
        acse_timeout_s=config.acse_timeout_s,
        dimse_timeout_s=config.dimse_timeout_s,
        idle_timeout_s=config.network_timeout_s,
        max_pdu_bytes=config.max_pdu,
    )


def association_policy(config: GatewayConfig, rules: RuleSet) -> AssociationPolicy:
    """Allowed callers from the service config plus the rule file's ``sources``; none at all = open."""
    sources = tuple(Source(c.ae_title, tuple(c.networks)) for c in config.allowed_callers)
    called = frozenset({config.ae_title}) if config.check_called_ae else frozenset()
    return AssociationPolicy(sources + tuple(rules.sources), called, association_limits(config))


def association_handlers(
    config: GatewayConfig, rules: RuleSet, gate: AssociationGate | None = None
) -> list[tuple[Any, Any]]:
    """Association-time handlers: the allow-list/limit gate (rejects before negotiation) and TCP_NODELAY.
    Pass one ``gate`` to several listeners (plain + TLS) so the limits count them together."""
    gate = gate or AssociationGate(association_policy(config, rules))
    return [*gate.evt_handlers(), (evt.EVT_CONN_OPEN, set_nodelay)]


def start_scp(
    config: GatewayConfig,
    intake: Intake,
    rules: RuleSet,
    *,
    port: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    gate: AssociationGate | None = None,
    budget: ByteBudget | None = None,
    receivers: ReceiverPool | None = None,
) -> AdmittedServer | LeanServer:
    """Start listening in background threads; returns the server (``.shutdown()`` to stop). Connections are
    screened by :mod:`gateway.core.admission` before pynetdicom sees them. Pass one ``budget`` to several
    listeners so their received bytes count together. With ``receivers`` (not for TLS) the associations are
    served by those processes (gateway/core/receivers.py)."""
    ae = build_ae(config)
    handlers: list[Any] = [
        *association_handlers(config, rules, gate),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [intake]),
    ]
    address = (config.bind, config.port if port is None else port)
    if config.receive_path == "lean":
        return start_lean(config, intake, rules, address, ssl_context, gate, budget, receivers)
    server: AdmittedServer = ae.make_server(
        address,
        ssl_context=ssl_context,
        evt_handlers=handlers,
        server_class=AdmittedServer,
        limits=admission_limits(config),
        budget=budget or ByteBudget(config.max_inflight_bytes),
    )
    ae._servers.append(server)
    server.start_admission()
    _log_listening(config, address, server.server_address[1], ssl_context, receive_path="pynetdicom")
    return server


def _log_listening(
    config: GatewayConfig,
    address: tuple[str, int],
    port: int,
    ssl_context: ssl.SSLContext | None,
    **extra: str | int,
) -> None:
    LOG.info(
        "scp.listening",
        ae_title=config.ae_title,
        bind=address[0],
        port=port,
        tls=ssl_context is not None,
        **extra,
    )


def start_lean(
    config: GatewayConfig,
    intake: Intake,
    rules: RuleSet,
    address: tuple[str, int],
    ssl_context: ssl.SSLContext | None,
    gate: AssociationGate | None,
    budget: ByteBudget | None,
    receivers: ReceiverPool | None = None,
) -> LeanServer:
    """The lean receive path (gateway/core/lean_scp.py) with the same contexts, limits and gate."""
    setup = Setup(
        intake=intake,
        gate=gate or AssociationGate(association_policy(config, rules)),
        limits=admission_limits(config),
        association=association_limits(config),
        budget=budget or ByteBudget(config.max_inflight_bytes),
        negotiations=Negotiations(build_ae(config).supported_contexts, config.max_pdu),
    )
    if receivers is not None and ssl_context is None:
        from gateway.core.receivers import HandoffServer

        server: LeanServer = HandoffServer(address, setup, receivers).start()
    else:
        server = LeanServer(address, setup, ssl_context).start()
    processes = receivers.count if receivers is not None and ssl_context is None else 1
    port = server.server_address[1]
    _log_listening(config, address, port, ssl_context, receive_path="lean", processes=processes)
    return server
