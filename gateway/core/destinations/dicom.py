"""DICOM destination: C-STORE SCU offering each output's own SOP class and transfer syntax (no transcoding).

Each output file is sent as stored: pynetdicom reads it in PDU-sized chunks from the file (never decoding
it), so the presentation context must match the file meta exactly, which the contexts offered here do.

The association is opened in :func:`open_association`, the one place where TLS (``gateway.ops.tls``) applies.
Success and warning statuses count as stored; anything else, or a lost association, is a failure the
forwarder retries. Deterministic output UIDs make a re-send idempotent at the destination.

pynetdicom's association reactor polls the DIMSE queue without blocking while ``send_c_store`` waits on it;
its pause handshake leaves a window in which the reactor takes the peer's response off the queue ("Received
unexpected C-STORE service message"), so the sender waits out the DIMSE timeout and aborts a store that
succeeded (still so upstream). :func:`keep_responses_for_the_sender` closes the window for our associations.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

from pydicom.filereader import read_file_meta_info
from pynetdicom import AE, _config, evt

from dicom_rules import DicomDestination
from gateway.core import verification
from gateway.core.config import GatewayConfig
from gateway.core.destinations import OutboundFile, SendResult, register
from gateway.ops.tls import scu_tls_args

MAX_CONTEXTS = 128


def _nodelay(event: Any) -> None:
    sock = getattr(event.assoc.dul.socket, "socket", None)
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def is_stored(status: int) -> bool:
    """PS3.4 C-STORE: 0x0000 success; 0xB000/0xB007/0xB006 warnings still mean stored."""
    return status == 0x0000 or (status & 0xF000) == 0xB000


def keep_responses_for_the_sender(assoc: Any) -> None:
    """Leave every DIMSE message on the queue for the blocking ``send_*`` call that waits for it.

    The reactor's non-blocking poll exists to serve requests a peer sends; we only request (no SCP role is
    offered), so the poll may never take anything. A request a peer sent anyway reaches the waiting ``send_*``
    instead, which sees no valid response and aborts: a failure, never a store counted as done.
    """
    dimse = assoc.dimse
    take = dimse.get_msg

    def get_msg(block: bool = False) -> tuple[Any, Any]:
        return take(block) if block else (None, None)

    dimse.get_msg = get_msg


def open_association(
    destination: DicomDestination, config: GatewayConfig, contexts: Sequence[tuple[str, str]]
) -> Any:
    """Request an association offering ``(sop_class, transfer_syntax)`` contexts, with TLS when configured."""
    ae = AE(ae_title=config.ae_title)
    ae.connection_timeout = config.forward.connect_timeout_s
    ae.acse_timeout = config.forward.connect_timeout_s
    ae.dimse_timeout = config.forward.dimse_timeout_s
    ae.network_timeout = config.forward.dimse_timeout_s
    ae.maximum_pdu_size = config.max_pdu
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(
        destination.host,
        destination.port,
        ae_title=destination.ae_title,
        tls_args=scu_tls_args(destination.tls, destination.host),
        evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay)],
    )
    keep_responses_for_the_sender(assoc)  # before any DIMSE message: none is on the queue yet
    return assoc


class DicomSender:
    def __init__(self, destination: DicomDestination, config: GatewayConfig) -> None:
        self.destination = destination
        self.config = config
        _config.STORE_SEND_CHUNKED_DATASET = True  # pynetdicom's documented switch: send file paths as stored

    def send(self, files: Sequence[OutboundFile]) -> list[SendResult]:
        """One result per file: an unreadable output fails alone (retried, then quarantined)."""
        contexts: list[tuple[str, str]] = []
        unreadable: list[SendResult] = []
        readable: list[OutboundFile] = []
        for f in files:
            try:
                meta = read_file_meta_info(f.path)
                pair = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
            except Exception as exc:  # missing or corrupt outbox file
                unreadable.append(SendResult(f.instance_id, False, f"outbox-unreadable:{type(exc).__name__}"))
                continue
            readable.append(f)
            if pair not in contexts:
                contexts.append(pair)
        return unreadable + (self._send_readable(readable, contexts[:MAX_CONTEXTS]) if readable else [])

    def _send_readable(
        self, files: Sequence[OutboundFile], contexts: Sequence[tuple[str, str]]
    ) -> list[SendResult]:
        try:
            assoc = open_association(self.destination, self.config, contexts)
        except Exception as exc:  # TLS or socket setup errors
            return [SendResult(f.instance_id, False, f"connect:{type(exc).__name__}") for f in files]
        if not assoc.is_established:
            return [SendResult(f.instance_id, False, "association-refused") for f in files]
        try:
            return [self._store_one(assoc, f) for f in files]
        finally:
            if assoc.is_established:
                assoc.release()

    def _store_one(self, assoc: Any, f: OutboundFile) -> SendResult:
        if not assoc.is_established:
            return SendResult(f.instance_id, False, "association-lost")
        try:
            status = assoc.send_c_store(f.path)
        except Exception as exc:  # I/O, a file without meta, a lost association: this file fails alone
            return SendResult(f.instance_id, False, f"c-store:{type(exc).__name__}")
        code = int(getattr(status, "Status", -1)) if status else -1
        if code >= 0 and is_stored(code):
            return SendResult(f.instance_id, True)
        return SendResult(f.instance_id, False, f"status:0x{code:04X}" if code >= 0 else "no-response")

    def probe(self) -> tuple[bool, str]:
        """C-ECHO (gateway.core.verification): (answered with success, round trip or why not)."""
        return verification.probe(verification.echo_peer(self.destination, self.config))

    def echo(self) -> bool:
        return self.probe()[0]


@register(DicomDestination)
def make_dicom_sender(destination: DicomDestination, config: GatewayConfig) -> DicomSender:
    return DicomSender(destination, config)
