"""C-ECHO as a Verification SCU on a bare socket (PS3.8 upper layer, PS3.7 C-ECHO), TLS when configured.

Why not pynetdicom here: ``vera-gateway echo`` and ``doctor`` must answer fast, and importing pynetdicom
imports pydicom's pixel stack (numpy, decoders, the data dictionary: ~0.2-0.3 s) for one request whose bytes
are fixed. The exchange is the smallest an association allows: A-ASSOCIATE-RQ with one presentation context
(Verification, Implicit VR Little Endian), one C-ECHO-RQ command, A-RELEASE-RQ. Any other answer
(A-ASSOCIATE-RJ, A-ABORT, a wrong PDU, a timeout) is a failure with a reason that names no peer data.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.core.dimse import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    NO_DATASET,
    P_DATA_TF,
    VERIFICATION,
    MalformedCommand,
    command_bytes,
    command_fragments,
    command_us,
    padded,
    parse_command,
    pdata,
    us,
)

if TYPE_CHECKING:
    from dicom_rules import DicomDestination
    from gateway.core.config import GatewayConfig

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1087.1"  # VerA Gateway's echo SCU
IMPLEMENTATION_VERSION = "VERA_GW_ECHO"
CONTEXT_ID = 1
MAX_PDU = 16384
PDU_RJ, PDU_ABORT = 0x03, 0x07
MAX_REPLY_PDU = 1 << 20  # an answer to one echo is small; a larger length is a broken or hostile peer


class EchoError(Exception):
    """The peer did not confirm the echo; the message names the step, never peer-supplied values."""


@dataclass(frozen=True)
class EchoPeer:
    host: str
    port: int
    called_ae: str
    calling_ae: str
    connect_timeout_s: float = 10.0
    reply_timeout_s: float = 10.0
    tls: tuple[ssl.SSLContext, str | None] | None = None  # (client context, server name) as scu_tls_args


def _item(item_type: int, payload: bytes) -> bytes:
    return struct.pack(">BxH", item_type, len(payload)) + payload


def _ae(title: str) -> bytes:
    return title.encode("ascii")[:16].ljust(16, b" ")


def associate_rq(called_ae: str, calling_ae: str) -> bytes:
    """A-ASSOCIATE-RQ offering Verification in Implicit VR Little Endian (PS3.8 9.3.2)."""
    context = bytes([CONTEXT_ID, 0, 0, 0]) + _item(0x30, VERIFICATION.encode())
    context += _item(0x40, IMPLICIT_VR_LITTLE_ENDIAN.encode())
    user = _item(0x51, struct.pack(">I", MAX_PDU)) + _item(0x52, IMPLEMENTATION_CLASS_UID.encode())
    user += _item(0x55, IMPLEMENTATION_VERSION.encode())
    body = struct.pack(">H2x", 1) + _ae(called_ae) + _ae(calling_ae) + bytes(32)
    body += _item(0x10, APPLICATION_CONTEXT.encode()) + _item(0x20, context) + _item(0x50, user)
    return struct.pack(">BxI", 0x01, len(body)) + body


def echo_command(message_id: int = 1) -> bytes:
    """The C-ECHO-RQ command set, implicit VR little endian, with its group length."""
    return command_bytes(
        [
            (0x0002, padded(VERIFICATION.encode(), b"\0")),
            (0x0100, us(C_ECHO_RQ)),
            (0x0110, us(message_id)),
            (0x0800, us(NO_DATASET)),
        ]
    )


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise EchoError("connection closed by the peer")
        chunks += chunk
    return bytes(chunks)


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    pdu_type, length = struct.unpack(">BxI", _read_exact(sock, 6))
    if length > MAX_REPLY_PDU:
        raise EchoError(f"PDU type 0x{pdu_type:02X} of {length} bytes is too large for an echo answer")
    return pdu_type, _read_exact(sock, length)


def _accepted_context(body: bytes) -> bool:
    """True when the A-ASSOCIATE-AC accepts our presentation context (result 0)."""
    offset = 68  # protocol version, reserved, two AE titles, 32 reserved bytes
    while offset + 4 <= len(body):
        item_type, length = struct.unpack_from(">BxH", body, offset)
        if item_type == 0x21 and body[offset + 4] == CONTEXT_ID:
            return body[offset + 6] == 0
        offset += 4 + length
    return False


def _refusal(pdu_type: int, body: bytes) -> str:
    if pdu_type == PDU_RJ and len(body) >= 4:
        return f"association rejected (result {body[1]}, source {body[2]}, reason {body[3]})"
    if pdu_type == PDU_ABORT:
        return "association aborted by the peer"
    return f"unexpected PDU type 0x{pdu_type:02X}"


def _exchange(sock: socket.socket, peer: EchoPeer) -> int:
    """Associate, echo and release on a connected socket; the C-ECHO-RSP status."""
    sock.sendall(associate_rq(peer.called_ae, peer.calling_ae))
    pdu_type, body = read_pdu(sock)
    if pdu_type != 0x02:
        raise EchoError(_refusal(pdu_type, body))
    if not _accepted_context(body):
        raise EchoError("the peer does not accept Verification in Implicit VR Little Endian")
    sock.sendall(pdata(CONTEXT_ID, echo_command()))
    command, last = b"", False
    while not last:  # the response may come in several PDVs and PDUs
        pdu_type, body = read_pdu(sock)
        if pdu_type != P_DATA_TF:
            raise EchoError(_refusal(pdu_type, body))
        fragment, last = command_fragments(body)
        command += fragment
    try:
        fields = parse_command(command)
    except MalformedCommand:
        raise EchoError("the answer is not a command set") from None
    status = command_us(fields, 0x0900)
    if command_us(fields, 0x0100) != C_ECHO_RSP or status is None:
        raise EchoError("the answer is not a C-ECHO response")
    sock.sendall(struct.pack(">BxI4x", 0x05, 4))
    read_pdu(sock)  # a peer that aborts instead of releasing still answered the echo
    return status


def c_echo(peer: EchoPeer) -> int:
    """The status of a C-ECHO to ``peer`` (0x0000 is success); raises EchoError or OSError otherwise."""
    with socket.create_connection((peer.host, peer.port), timeout=peer.connect_timeout_s) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if peer.tls is None:
            raw.settimeout(peer.reply_timeout_s)
            return _exchange(raw, peer)
        context, server_name = peer.tls
        with context.wrap_socket(raw, server_hostname=server_name) as sock:
            sock.settimeout(peer.reply_timeout_s)
            return _exchange(sock, peer)


def probe(peer: EchoPeer) -> tuple[bool, str]:
    """(echo succeeded, a short detail: the round trip in ms or why it failed)."""
    started = time.perf_counter()
    try:
        status = c_echo(peer)
    except (OSError, EchoError) as exc:
        return False, _reason(exc)
    took_ms = (time.perf_counter() - started) * 1000
    if status != 0x0000:
        return False, f"C-ECHO status 0x{status:04X}"
    return True, f"{took_ms:.0f} ms"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, EchoError):
        return str(exc)
    if isinstance(exc, socket.timeout | TimeoutError):
        return "no answer within the timeout"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or type(exc).__name__}"
    return (exc.strerror if isinstance(exc, OSError) else None) or type(exc).__name__


def echo_peer(destination: DicomDestination, config: GatewayConfig) -> EchoPeer:
    """The echo target for a rule-file DICOM destination, with the forwarder's AE title, timeouts and TLS."""
    from gateway.ops.tls import scu_tls_args

    return EchoPeer(
        host=destination.host,
        port=destination.port,
        called_ae=destination.ae_title,
        calling_ae=config.ae_title,
        connect_timeout_s=config.forward.connect_timeout_s,
        reply_timeout_s=config.forward.dimse_timeout_s,
        tls=scu_tls_args(destination.tls, destination.host),
    )
