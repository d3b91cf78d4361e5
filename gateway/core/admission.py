"""Admission in front of pynetdicom: nobody who can open TCP connections can block the senders.

Why an accept loop of ours and not pynetdicom's hooks: pynetdicom creates an Association (two threads, one
slot of ``maximum_associations``) for every accepted socket *before* a byte is read, waits up to the ACSE
timeout for the A-ASSOCIATE-RQ even after the peer hung up, reads each PDU with a blocking ``recv`` and no
deadline, and buffers whatever length a PDU header claims. No event hook runs early enough to change that
(EVT_CONN_OPEN fires after the slot is taken; EVT_REQUESTED after the whole RQ was buffered). So:

- :class:`Doorman` accepts on the server's listening socket itself. Each connection is *pending* until it has
  sent one complete, well-formed A-ASSOCIATE-RQ within ``request_timeout_s`` (TLS handshake included); only
  then is it handed to pynetdicom, with the RQ bytes it already read. Pending connections are bounded per
  source address and overall, apart from the association limit: when a bound is reached the *oldest* pending
  connection (of that address first) is closed, so silent or trickling connections can never keep a fresh
  caller out. A malformed RQ (wrong framing, even presentation-context ID, ...) gets an A-ASSOCIATE-RJ.
- :class:`~gateway.core.pdu_guard.GuardedSocket` is the AssociationSocket pynetdicom reads
  through afterwards: every PDU must finish within ``pdu_timeout_s`` of its first byte; a PDU longer than the
  negotiated maximum is aborted at its header, before anything is buffered; datasets and the bytes held by
  all associations together are capped.

Every early close and abort is logged (addresses and reasons only) and counted in
``vera_gateway_connections_closed_total{reason}``.
"""

from __future__ import annotations

import contextlib
import gc
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from prometheus_client import Gauge
from pynetdicom import evt
from pynetdicom._handlers import (
    standard_dimse_recv_handler,
    standard_dimse_sent_handler,
    standard_pdu_recv_handler,
    standard_pdu_sent_handler,
)
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from gateway.core.pdu_guard import (
    HEADER,
    AdmissionLimits,
    ByteBudget,
    Guard,
    GuardedSocket,
    NotifyingQueue,
    PatientQueue,
    Refused,
    Wakeup,
    WakingQueue,
    abort_pdu,
    count_close,
    read_exact,
    reject_pdu,
    send_quietly,
)

LOG = structlog.get_logger(__name__)
PENDING = Gauge("vera_gateway_connections_pending", "Accepted connections without an A-ASSOCIATE-RQ yet")
A_ASSOCIATE_RQ = 0x01

__all__ = ["AdmissionLimits", "AdmittedServer", "ByteBudget", "Doorman", "Refused", "request_problem"]


# ---- the A-ASSOCIATE-RQ -------------------------------------------------------------------------------
def _items(data: bytes, start: int, length_bytes: int = 2) -> list[tuple[int, bytes]] | None:
    """(type, value) of each item from ``start``; None when the framing does not add up exactly."""
    out, off = [], start
    fmt = ">H" if length_bytes == 2 else ">L"
    while off < len(data):
        if off + 2 + length_bytes > len(data):
            return None
        (length,) = struct.unpack_from(fmt, data, off + 2)
        end = off + 2 + length_bytes + length
        if end > len(data):
            return None
        out.append((data[off], data[off + 2 + length_bytes : end]))
        off = end
    return out


def request_problem(pdu: bytes) -> str | None:
    """Why this A-ASSOCIATE-RQ PDU cannot be negotiated, or None (PS3.8 §9.3.2)."""
    body = pdu[6:]
    if len(body) < 68:
        return "request_too_short"
    items = _items(body, 68)
    if items is None:
        return "request_malformed"
    kinds = [kind for kind, _ in items]
    if kinds.count(0x10) != 1 or kinds.count(0x50) > 1 or not set(kinds) <= {0x10, 0x20, 0x50}:
        return "request_malformed"
    contexts = [value for kind, value in items if kind == 0x20]
    if not contexts:
        return "no_presentation_context"
    for value in contexts:
        if len(value) < 4 or _items(value, 4) is None:
            return "request_malformed"
        if value[0] % 2 == 0:
            return "even_context_id"
    ids = [value[0] for value in contexts]
    if len(set(ids)) != len(ids):
        return "duplicate_context_id"
    user = [value for kind, value in items if kind == 0x50]
    if user and _items(user[0], 0) is None:
        return "request_malformed"
    return None


def read_request(sock: socket.socket, deadline: float, max_bytes: int) -> bytes:
    """The first PDU, which must be an A-ASSOCIATE-RQ of at most ``max_bytes``; checked at its header."""
    header = read_exact(sock, 6, deadline, "request_timeout")
    pdu_type, _, length = HEADER.unpack(header)
    if pdu_type != A_ASSOCIATE_RQ:
        raise Refused("not_associate_rq")
    if length > max_bytes:
        raise Refused("request_too_large")
    return header + read_exact(sock, length, deadline, "request_timeout")


# ---- pending connections ----------------------------------------------------------------------------------
@dataclass(eq=False)
class Pending:
    sock: socket.socket
    address: tuple[str, int]
    started: float
    evicted: str = ""

    @property
    def ip(self) -> str:
        return str(self.address[0])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the screening thread's recv
        with contextlib.suppress(OSError):
            self.sock.close()


class Doorman:
    """The accept loop of one listening socket; hands screened connections to ``handover``."""

    def __init__(
        self,
        listener: socket.socket,
        limits: AdmissionLimits,
        handover: Callable[[socket.socket, tuple[str, int], bytes], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.listener = listener
        self.limits = limits
        self.handover = handover
        self.ssl_context = ssl_context
        self._pending: list[Pending] = []  # oldest first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="admission-accept", daemon=True)

    def start(self) -> Doorman:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        with self._lock:
            pending, self._pending = self._pending, []
        for conn in pending:
            conn.close()
        PENDING.dec(len(pending))

    def pending(self, ip: str | None = None) -> int:
        with self._lock:
            return sum(1 for c in self._pending if ip is None or c.ip == ip)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.25)
                if not ready:
                    continue
                sock, address = self.listener.accept()
            except (OSError, ValueError):
                if self._stop.is_set():
                    return
                time.sleep(0.05)  # e.g. EMFILE: let pending connections time out
                continue
            self._enqueue(Pending(sock, address, time.monotonic()))

    def _enqueue(self, conn: Pending) -> None:
        with self._lock:
            victims = self._make_room(conn.ip)
            self._pending.append(conn)
        PENDING.inc(1 - len(victims))
        for victim in victims:
            victim.close()
            count_close(victim.evicted, victim.ip)
        threading.Thread(target=self._screen, args=(conn,), name="admission-screen", daemon=True).start()

    def _make_room(self, ip: str) -> list[Pending]:
        """Under the lock: remove the oldest pending connections so that one more fits the bounds."""
        victims = []
        same = [c for c in self._pending if c.ip == ip]
        if len(same) >= self.limits.max_pending_per_source:
            same[0].evicted = "pending_per_source_limit"
            victims.append(same[0])
        if len(self._pending) - len(victims) >= self.limits.max_pending:
            oldest = next(c for c in self._pending if c not in victims)
            oldest.evicted = "pending_total_limit"
            victims.append(oldest)
        for victim in victims:
            self._pending.remove(victim)
        return victims

    def _claim(self, conn: Pending) -> bool:
        """Take ``conn`` out of the pending list; False when it was evicted meanwhile."""
        with self._lock:
            if conn not in self._pending:
                return False
            self._pending.remove(conn)
        PENDING.dec()
        return True

    def _screen(self, conn: Pending) -> None:
        deadline = conn.started + self.limits.request_timeout_s
        sock = conn.sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                sock = conn.sock = self.ssl_context.wrap_socket(sock, server_side=True)
            request = read_request(sock, deadline, self.limits.max_request_bytes)
        except (OSError, ValueError) as exc:
            if self._claim(conn):
                conn.close()
                reason = str(exc) if isinstance(exc, Refused) else "tls_or_socket_error"
                if isinstance(exc, Refused) and reason == "request_too_large":
                    send_quietly(sock, abort_pdu())
                count_close(reason, conn.ip)
            return
        problem = request_problem(request)
        if not self._claim(conn):
            return
        if problem is not None:
            send_quietly(sock, reject_pdu())
            conn.close()
            count_close(problem, conn.ip)
            return
        sock.settimeout(None)
        self.handover(sock, conn.address, request)


# ---- pynetdicom's server, fed by the doorman --------------------------------------------------------------
@dataclass(frozen=True)
class Admitted:
    """A screened connection: the socket and the A-ASSOCIATE-RQ bytes already read from it."""

    sock: socket.socket
    request: bytes


class GuardedRequestHandler(RequestHandler):
    def __init__(self, request: Admitted, client_address: Any, server: AdmittedServer) -> None:
        self.admitted = request
        super().__init__(request.sock, client_address, server)

    def _create_association(self) -> Any:
        assoc = super()._create_association()
        server: AdmittedServer = self.server  # type: ignore[assignment]
        peer_ip = str(self.client_address[0])
        guard = Guard(server.limits, server.budget, peer_ip, bytearray(self.admitted.request))
        GuardedSocket.adopt(assoc.dul.socket, guard)
        guard.wakeup = Wakeup()  # event-driven DUL and acceptor loops (see Wakeup, PatientQueue)
        assoc.dul.to_provider_queue = WakingQueue(guard.wakeup)
        assoc.dul._run_loop_delay = 0.0  # the DUL now waits in GuardedSocket.ready instead
        assoc.dimse.msg_queue = PatientQueue()
        assoc.dul.to_user_queue = NotifyingQueue(assoc.dimse.msg_queue)
        return assoc


class AdmittedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server without its own accept loop: it binds and listens as usual, and the
    :class:`Doorman` accepts on its socket and passes it screened connections."""

    limits: AdmissionLimits
    budget: ByteBudget
    doorman: Doorman

    def __init__(self, *args: Any, limits: AdmissionLimits, budget: ByteBudget, **kwargs: Any) -> None:
        self.limits, self.budget = limits, budget
        self._handovers, self._handovers_lock = 0, threading.Lock()
        super().__init__(*args, request_handler=GuardedRequestHandler, **kwargs)

    def _bind_defaults(self) -> None:
        """pynetdicom's defaults minus its "standard" PDU/DIMSE log handlers: they format every PDU and
        message (sender-supplied UIDs included) for DEBUG/INFO lines this service never emits."""
        super()._bind_defaults()
        for event, handler in (
            (evt.EVT_DIMSE_RECV, standard_dimse_recv_handler),
            (evt.EVT_DIMSE_SENT, standard_dimse_sent_handler),
            (evt.EVT_PDU_RECV, standard_pdu_recv_handler),
            (evt.EVT_PDU_SENT, standard_pdu_sent_handler),
        ):
            if handler in [h for h, _ in self.get_handlers(event)]:
                self.unbind(event, handler)

    def start_admission(self) -> AdmittedServer:
        self.doorman = Doorman(self.socket, self.limits, self._hand_over, self.ssl_context).start()
        return self

    def _hand_over(self, sock: socket.socket, address: tuple[str, int], request: bytes) -> None:
        with self._handovers_lock:
            self._handovers += 1
            collect = self._handovers % 64 == 0
        if collect:  # pynetdicom's own accept loop does this too: finished associations are reference cycles
            gc.collect()  # (threads, sockets, wake-up pipes) that the allocation-driven collector frees late
        self.process_request(Admitted(sock, request), address)  # type: ignore[arg-type]

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request.sock if isinstance(request, Admitted) else request)

    def shutdown(self) -> None:
        self.doorman.stop()
        self.server_close()
        with contextlib.suppress(ValueError):
            self.ae._servers.remove(self)
