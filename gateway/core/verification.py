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

if TYPE_CHECKING:
    from dicom_rules import DicomDestination
    from gateway.core.config import GatewayConfig

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1087.1"  # VerA Gateway's echo SCU
IMPLEMENTATION_VERSION = "VERA_GW_ECHO"
CONTEXT_ID = 1
MAX_PDU = 16384
C_ECHO_RQ, C_ECHO_RSP = 0x0030, 0x8030
NO_DATASET = 0x0101
PDU_RJ, PDU_PDATA, PDU_RELEASE_RP, PDU_ABORT = 0x03, 0x04, 0x06, 0x07
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
    context = bytes([CONTEXT_ID, 0, 0, 0]) + _item(0x30, VERIFICATION_SOP_CLASS.encode())
    context += _item(0x40, IMPLICIT_VR_LITTLE_ENDIAN.encode())
    user = _item(0x51, struct.pack(">I", MAX_PDU)) + _item(0x52, IMPLEMENTATION_CLASS_UID.encode())
    user += _item(0x55, IMPLEMENTATION_VERSION.encode())
    body = struct.pack(">H2x", 1) + _ae(called_ae) + _ae(calling_ae) + bytes(32)
    body += _item(0x10, APPLICATION_CONTEXT.encode()) + _item(0x20, context) + _item(0x50, user)
    return struct.pack(">BxI", 0x01, len(body)) + body


def _element(group_element: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, group_element, len(value)) + value


def echo_command(message_id: int = 1) -> bytes:
    """The C-ECHO-RQ command set, implicit VR little endian, with its group length."""
    uid = VERIFICATION_SOP_CLASS.encode()
    elements = _element(0x0002, uid + b"\0" * (len(uid) % 2))
    elements += _element(0x0100, struct.pack("<H", C_ECHO_RQ))
    elements += _element(0x0110, struct.pack("<H", message_id))
    elements += _element(0x0800, struct.pack("<H", NO_DATASET))
    return _element(0x0000, struct.pack("<I", len(elements))) + elements


def p_data(command: bytes) -> bytes:
    """One P-DATA-TF with one PDV: the whole command, marked command + last fragment."""
    pdv = struct.pack(">IBB", len(command) + 2, CONTEXT_ID, 0x03) + command
    return struct.pack(">BxI", PDU_PDATA, len(pdv)) + pdv


def command_fields(command: bytes) -> dict[int, int]:
    """The US elements of a group-0000 command set (tag element → value); other VRs are skipped."""
    fields: dict[int, int] = {}
    offset = 0
    while offset + 8 <= len(command):
        group, element, length = struct.unpack_from("<HHI", command, offset)
        value = command[offset + 8 : offset + 8 + length]
        if group == 0 and length == 2:
            fields[element] = struct.unpack("<H", value)[0]
        offset += 8 + length
    return fields


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
    sock.sendall(p_data(echo_command()))
    command = bytearray()
    while True:  # the response may come in several PDVs
        pdu_type, body = read_pdu(sock)
        if pdu_type != PDU_PDATA:
            raise EchoError(_refusal(pdu_type, body))
        last = _command_pdvs(body, command)
        if last:
            break
    fields = command_fields(bytes(command))
    if fields.get(0x0100) != C_ECHO_RSP or 0x0900 not in fields:
        raise EchoError("the answer is not a C-ECHO response")
    sock.sendall(struct.pack(">BxI4x", 0x05, 4))
    pdu_type, _ = read_pdu(sock)  # a peer that aborts instead of releasing still answered the echo
    return fields[0x0900]


def _command_pdvs(body: bytes, command: bytearray) -> bool:
    """Append the command fragments of one P-DATA-TF; True once the last command fragment arrived."""
    offset, last = 0, False
    while offset + 6 <= len(body):
        length, _, header = struct.unpack_from(">IBB", body, offset)
        if header & 0x01:
            command += body[offset + 6 : offset + 4 + length]
            last = last or bool(header & 0x02)
        offset += 4 + length
    return last


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
