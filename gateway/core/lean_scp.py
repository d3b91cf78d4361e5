"""The lean receive path: one thread per association reads the socket, assembles each DIMSE message and stores
it, with no pynetdicom DUL or association thread in between.

Why: with pynetdicom every C-STORE crossed three threads (socket → DUL → association) and ran pynetdicom's
per-message Python (state machine, primitives, a pydicom decode of the command set); that was most of the
gateway's CPU per instance beyond the store itself (docs/receive-path.md). This path keeps what has to stay
(bounds, deadlines, statuses) and drops the rest:

- pynetdicom still decodes the A-ASSOCIATE-RQ and encodes the A-ASSOCIATE-AC (its PDU classes), and its
  presentation-context negotiation chooses the contexts (same supported contexts as the pynetdicom path,
  :func:`gateway.core.scp.build_ae`), remembered per request (:mod:`gateway.core.negotiation`);
  :class:`~gateway.ops.policy.AssociationGate` admits or rejects.
- the command set (always Implicit VR Little Endian, PS3.7 §6.3.1) is parsed by :func:`parse_command` and the
  response is encoded by :func:`command_bytes`; the dataset bytes go to the intake as received, behind the
  Part 10 header of :mod:`gateway.core.part10`.
- bounds as on the pynetdicom path: a PDU longer than the negotiated maximum is aborted at its header; a
  dataset above ``max_dataset_bytes`` is drained and answered 0xA701 (past twice the cap: A-ABORT); the bytes
  held by all associations are capped (:class:`~gateway.core.pdu_guard.ByteBudget`); a PDU must finish within
  the network timeout of the one before, and a message within the DIMSE timeout of its first fragment.

Only the storage role is served (C-STORE and C-ECHO as SCP); anything else gets an A-ABORT.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog
from pynetdicom.presentation import PresentationContext

from gateway.core.admission import Doorman
from gateway.core.dimse import (
    C_ECHO_RQ,
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    HEADER,
    NO_DATASET,
    P_DATA_TF,
    PDV,
    VERIFICATION,
    MalformedCommand,
    command_bytes,
    command_uid,
    command_us,
    padded,
    parse_command,
    pdata,
    us,
)
from gateway.core.intake import CANNOT_UNDERSTAND, OUT_OF_RESOURCES, Caller, Intake, StoreRequest
from gateway.core.negotiation import Negotiations, ae_titles
from gateway.core.part10 import PREAMBLE, file_meta
from gateway.core.pdu_guard import (
    AdmissionLimits,
    ByteBudget,
    Refused,
    abort_pdu,
    count_close,
    read_exact,
    reject_pdu,
    send_quietly,
)
from gateway.ops.policy import AssociationGate, AssociationLimits, Refusal, RefusalReason, count_refusal

LOG = structlog.get_logger(__name__)

A_RELEASE_RQ, A_RELEASE_RP, A_ABORT = 0x05, 0x06, 0x07
RELEASE_RP = bytes((A_RELEASE_RP, 0, 0, 0, 0, 4, 0, 0, 0, 0))
SOP_CLASS_NOT_SUPPORTED = 0x0122


# ---- the command set ------------------------------------------------------------------------------------
def response(
    command_field: int, request: dict[int, bytes], status: int, sop_class: str, comment: str = ""
) -> bytes:
    """The C-STORE-RSP / C-ECHO-RSP command set answering ``request``."""
    elements = [
        (0x0002, padded(sop_class.encode("latin-1"), b"\0")),
        (0x0100, us(command_field)),
        (0x0120, request.get(0x0110, b"\0\0")),  # Message ID Being Responded To
        (0x0800, us(NO_DATASET)),
        (0x0900, us(status)),
    ]
    if comment:
        elements.append((0x0902, padded(comment[:64].encode("ascii", "replace"), b" ")))
    if 0x1000 in request:
        elements.append((0x1000, request[0x1000]))
    return command_bytes(elements)


# ---- reading PDUs ---------------------------------------------------------------------------------------
class PduReader:
    """PDUs off one socket through a receive buffer: a small C-STORE's command and data PDUs often arrive in
    one ``recv`` (one poll and one timeout update instead of four of each). A PDU longer than what is buffered
    gets its own buffer, filled straight from the socket (the data fragments kept point into it)."""

    def __init__(self, sock: socket.socket, size: int = 65_536) -> None:
        self.sock = sock
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.start = self.end = 0

    def header(self, deadline: float, reason: str) -> bytes | None:
        """The next 6-byte PDU header; None when the peer closed (between PDUs or mid-header)."""
        while self.end - self.start < 6:
            if not self._fill(deadline, reason):
                return None
        header = bytes(self.view[self.start : self.start + 6])
        self.start += 6
        return header

    def body(self, n: int, deadline: float, reason: str) -> bytearray:
        """The next ``n`` bytes, owned by the caller; Refused('peer_closed') when the peer closes first."""
        have = self.end - self.start
        if have >= n:
            out = self.buf[self.start : self.start + n]
            self.start += n
            return out
        if n <= len(self.buf) // 4:  # small: top the buffer up
            while self.end - self.start < n:
                if not self._fill(deadline, reason):
                    raise Refused("peer_closed")
            return self.body(n, deadline, reason)
        out = bytearray(n)
        out[:have] = self.view[self.start : self.end]
        self.start = self.end = 0
        rest = read_exact(self.sock, n - have, deadline, reason)
        out[have:] = rest
        return out

    def _fill(self, deadline: float, reason: str) -> bool:
        """Receive more into the buffer (moving what is left to its front first); False at EOF."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf) or self.start > len(self.buf) // 2:
            left = self.end - self.start
            self.buf[:left] = self.view[self.start : self.end]
            self.start, self.end = 0, left
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Refused(reason)
        self.sock.settimeout(remaining)
        try:
            got = self.sock.recv_into(self.view[self.end :])
        except TimeoutError:
            raise Refused(reason) from None
        self.end += got
        return got > 0


# ---- the gate ---------------------------------------------------------------------------------------------
def gate_request(
    gate: AssociationGate, key: int, request: bytes, sock: socket.socket, peer_ip: str
) -> Caller | None:
    """Admit the A-ASSOCIATE-RQ at the gate (a slot held under ``key`` until ``gate.release(key)``) and return
    its caller; None when it was rejected (the A-ASSOCIATE-RJ is sent, the refusal logged and counted)."""
    try:
        calling, called = ae_titles(request)
    except Exception:  # an AE title pynetdicom refuses: the request is malformed
        send_quietly(sock, reject_pdu())
        count_close("request_malformed", peer_ip)
        return None
    try:
        refusal = gate.admit(key, calling, called, peer_ip)
    except Exception:
        LOG.exception("association_policy_error")
        refusal = Refusal(RefusalReason.POLICY_ERROR)
        count_refusal(refusal.reason)
    if refusal is not None:
        send_quietly(sock, reject_pdu(*refusal.reject_codes))
        return None
    return Caller(calling.strip(), peer_ip)


# ---- one association ------------------------------------------------------------------------------------
@dataclass
class Message:
    """The DIMSE message being received: command fragments, then (unless none) data fragments."""

    context_id: int
    started: float
    command: bytearray = field(default_factory=bytearray)
    fields: dict[int, bytes] | None = None  # the parsed command, once its last fragment arrived
    data: list[memoryview] = field(default_factory=list)
    size: int = 0  # data bytes kept
    drained: int = 0  # data bytes dropped (the message went past max_dataset_bytes)
    held: int = 0  # bytes taken from the budget
    header: bytes = b""  # a C-STORE's Part 10 header (preamble + file meta), once its command is parsed
    hasher: Any = None  # sha256 over header + data kept so far: hashed while the next PDU is on its way


@dataclass(frozen=True)
class Setup:
    """What the listener shares with its associations."""

    intake: Intake
    gate: AssociationGate
    limits: AdmissionLimits
    association: AssociationLimits
    budget: ByteBudget
    negotiations: Negotiations


class LeanAssociation:
    def __init__(self, setup: Setup, sock: socket.socket, address: tuple[str, int], request: bytes) -> None:
        self.setup, self.sock, self.request = setup, sock, request
        self.peer_ip = str(address[0])
        self.caller = Caller("", self.peer_ip)
        self.contexts: dict[int, PresentationContext] = {}
        self.message: Message | None = None
        self.reader = PduReader(sock)

    def serve(self) -> None:
        """Run the association to its end; the socket is closed and the gate slot freed on every path."""
        admitted = False
        try:
            admitted = self._associate()
            if admitted:
                self._loop()
        except Refused as exc:
            reason = str(exc)
            send_quietly(self.sock, abort_pdu(0x01 if reason == "unknown_pdu_type" else 0x06))
            count_close(reason, self.peer_ip)
        except (OSError, ValueError):
            pass  # the peer went away (reset, TLS error): nothing to answer
        finally:
            self._release_message()
            # always: the gate may have admitted and the A-ASSOCIATE-AC's send then failed (peer gone);
            # releasing a key the gate does not hold (refused, never admitted) frees nothing
            self.setup.gate.release(id(self))
            with contextlib.suppress(OSError):
                self.sock.close()

    # ---- A-ASSOCIATE ---------------------------------------------------------------------------------
    def _associate(self) -> bool:
        try:
            negotiated = self.setup.negotiations.for_request(self.request)
        except Exception:  # the doorman checked the framing; a value pynetdicom refuses is still malformed
            send_quietly(self.sock, reject_pdu())
            count_close("request_malformed", self.peer_ip)
            return False
        caller = gate_request(self.setup.gate, id(self), self.request, self.sock, self.peer_ip)
        if caller is None:
            return False
        self.caller = caller
        self.contexts = negotiated.contexts
        self.sock.sendall(negotiated.accept(self.request))
        return True

    # ---- PDUs ----------------------------------------------------------------------------------------
    def _loop(self) -> None:
        limits = self.setup.limits
        while True:
            deadline, reason = time.monotonic() + limits.pdu_timeout_s, "pdu_timeout"  # idle, then the PDU
            if self.message is not None:  # a message must also finish within the DIMSE timeout
                message_deadline = self.message.started + self.setup.association.dimse_timeout_s
                if message_deadline < deadline:
                    deadline, reason = message_deadline, "dimse_timeout"
            header = self.reader.header(deadline, reason)
            if header is None:
                return  # closed by the peer (between PDUs, or mid-header)
            pdu_type, _, length = HEADER.unpack(header)
            if pdu_type == P_DATA_TF:
                if length > limits.pdu_bound:
                    raise Refused("pdu_too_large")
                self._pdata(self.reader.body(length, deadline, reason))
                continue
            if not 0x01 <= pdu_type <= 0x07:
                raise Refused("unknown_pdu_type")
            if length > limits.max_request_bytes:
                raise Refused("pdu_too_large")
            self.reader.body(length, deadline, reason)
            if pdu_type == A_RELEASE_RQ:
                send_quietly(self.sock, RELEASE_RP)
                return
            if pdu_type == A_ABORT:
                return
            raise Refused("unexpected_pdu")

    def _pdata(self, body: bytearray) -> None:
        view, off, end = memoryview(body), 0, len(body)
        while off < end:
            if off + 6 > end:
                raise Refused("invalid_pdv")
            length, context_id, control = PDV.unpack_from(body, off)
            if length < 2 or off + 4 + length > end:
                raise Refused("invalid_pdv")
            if context_id not in self.contexts:
                raise Refused("unknown_context")
            fragment = view[off + 6 : off + 4 + length]
            off += 4 + length
            if control & 0x01:
                self._command_fragment(context_id, fragment, bool(control & 0x02))
            else:
                self._data_fragment(context_id, fragment, bool(control & 0x02))

    def _command_fragment(self, context_id: int, fragment: memoryview, last: bool) -> None:
        message = self.message
        if message is None:
            message = self.message = Message(context_id, time.monotonic())
        if message.fields is not None or message.context_id != context_id:
            raise Refused("unexpected_pdv")
        message.command += fragment
        if len(message.command) > self.setup.limits.max_request_bytes:
            raise Refused("invalid_command")
        if not last:
            return
        try:
            message.fields = parse_command(message.command)
        except MalformedCommand:
            raise Refused("invalid_command") from None
        if command_us(message.fields, 0x0800) == NO_DATASET:
            self._dispatch(message)
        elif command_us(message.fields, 0x0100) == C_STORE_RQ:
            message.header = self._part10_header(message.fields, self.contexts[context_id])
            message.hasher = hashlib.sha256(message.header)

    @staticmethod
    def _part10_header(fields: dict[int, bytes], context: PresentationContext) -> bytes:
        """Preamble + file meta for the C-STORE's dataset; empty when a command UID is not ASCII."""
        sop_class, instance = command_uid(fields, 0x0002), command_uid(fields, 0x1000)
        try:
            return PREAMBLE + file_meta(sop_class, instance, str(context.transfer_syntax[0]))
        except UnicodeEncodeError:
            return b""

    def _data_fragment(self, context_id: int, fragment: memoryview, last: bool) -> None:
        message = self.message
        if message is None or message.fields is None or message.context_id != context_id:
            raise Refused("unexpected_pdv")
        cap, n = self.setup.limits.max_dataset_bytes, len(fragment)
        if message.drained or message.size + n > cap:
            message.drained += n
            if message.size + message.drained > 2 * cap:  # this far past the cap it is not drained any longer
                raise Refused("dataset_too_large")
        else:
            self.setup.budget.take(n, time.monotonic() + self.setup.limits.pdu_timeout_s)
            message.held += n
            message.data.append(fragment)
            message.size += n
            if message.hasher is not None:
                message.hasher.update(fragment)
        if last:
            self._dispatch(message)

    # ---- DIMSE ---------------------------------------------------------------------------------------
    def _dispatch(self, message: Message) -> None:
        fields = message.fields or {}
        command = command_us(fields, 0x0100)
        context = self.contexts[message.context_id]
        if command == C_ECHO_RQ:
            answer = response(C_ECHO_RSP, fields, 0x0000, VERIFICATION)
        elif command == C_STORE_RQ:
            status, comment = self._store(message, fields, context)
            answer = response(C_STORE_RSP, fields, status, command_uid(fields, 0x0002), comment)
        else:
            raise Refused("unsupported_command")
        self._release_message()
        self.sock.sendall(pdata(message.context_id, answer))

    def _store(
        self, message: Message, fields: dict[int, bytes], context: PresentationContext
    ) -> tuple[int, str]:
        intake, sop_class = self.setup.intake, command_uid(fields, 0x0002)
        if message.drained:
            limit = self.setup.limits.max_dataset_bytes
            status = intake.refuse_too_large(self.caller, limit)
            return status, f"Data set larger than this receiver's limit ({limit} bytes)"
        if sop_class != context.abstract_syntax:
            return SOP_CLASS_NOT_SUPPORTED, ""
        header, instance = message.header, command_uid(fields, 0x1000)
        digest = message.hasher.hexdigest() if header else None
        data = b"".join((header, *message.data))
        syntax = str(context.transfer_syntax[0])
        request = StoreRequest(data, sop_class, instance, self.caller, digest, len(header), syntax)
        try:
            if not header:
                return intake.reject(request, "non-ascii-command-uid", CANNOT_UNDERSTAND), ""
            return intake.receive(request), ""
        except Exception as exc:
            LOG.error("scp.store_failed", error=type(exc).__name__)
            return OUT_OF_RESOURCES, ""

    def _release_message(self) -> None:
        message, self.message = self.message, None
        if message is not None and message.held:
            self.setup.budget.give(message.held)
            message.held = 0


# ---- the listener ---------------------------------------------------------------------------------------
class LeanServer:
    """A listening socket screened by the :class:`Doorman`; each admitted connection is served on the
    doorman's screening thread, which becomes the association's only thread."""

    def __init__(self, address: tuple[str, int], setup: Setup, ssl_context: Any = None) -> None:
        self.setup = setup
        self.socket = socket.create_server(address, backlog=128)
        self.server_address = self.socket.getsockname()
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.doorman = Doorman(self.socket, setup.limits, self._serve, ssl_context)

    def start(self) -> LeanServer:
        self.doorman.start()
        return self

    def _serve(self, sock: socket.socket, address: tuple[str, int], request: bytes) -> None:
        with self._lock:
            self._live.add(sock)
        threading.current_thread().name = "association"
        try:
            LeanAssociation(self.setup, sock, address, request).serve()
        finally:
            with self._lock:
                self._live.discard(sock)

    def shutdown(self) -> None:
        self.doorman.stop()
        with contextlib.suppress(OSError):
            self.socket.close()
        with self._lock:
            live = list(self._live)
        for sock in live:  # wakes each association's read; its thread closes the socket
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
