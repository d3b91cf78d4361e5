"""The association's socket, as pynetdicom reads through it once :mod:`gateway.core.admission` handed it over.

- :class:`GuardedSocket`: every PDU must finish within ``pdu_timeout_s`` of its first byte; a PDU longer than
  the negotiated maximum (or any non-data PDU above the RQ bound) is aborted at its header, before anything
  is buffered; all associations together hold at most ``max_inflight_bytes`` (:class:`ByteBudget`: a reader
  waits for room, TCP pushes back on the sender). A DIMSE message whose data grows past ``max_dataset_bytes``
  is *drained*: its further data fragments are read and dropped (up to twice ``max_dataset_bytes`` in all;
  past that the association is aborted), and its last fragment reaches pynetdicom as a per-connection
  marker, so the C-STORE completes and the handler answers it with a failure status (:func:`was_drained`)
  instead of an A-ABORT that would also end the sender's other transfers.
- Event-driven waits (:class:`Wakeup`, :class:`WakingQueue`, :class:`NotifyingQueue`, :class:`PatientQueue`):
  pynetdicom's DUL and acceptor loops nap 1 ms between polls; here they wait on the socket and on their
  queues, so a PDU, a response or a release is handled at once.

Shared with the admission: the limits, the close reasons and their counter, the PDU helpers.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import ssl
import struct
import threading
import time
import weakref
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

import structlog
from prometheus_client import Counter
from pynetdicom.transport import AssociationSocket

from gateway.core.dimse import HEADER, P_DATA_TF

LOG = structlog.get_logger(__name__)

CLOSED = Counter(
    "vera_gateway_connections_closed_total",
    "Connections closed or aborted by admission and PDU guards before or during an association, by reason",
    ["reason"],
)

KNOWN_PDU_TYPES = frozenset(range(0x01, 0x08))
RECV_CHUNK = 1 << 20
DRAINED_MARKER = b"\0VERA-DRAINED\0\0"  # + 16 random bytes: the last fragment of a drained message


@dataclass(frozen=True)
class AdmissionLimits:
    request_timeout_s: float = 10.0  # accept → complete A-ASSOCIATE-RQ (TLS handshake included)
    max_pending: int = 64  # connections without a complete RQ, all sources together
    max_pending_per_source: int = 8
    max_request_bytes: int = 65_536  # A-ASSOCIATE-RQ (and any other non-data PDU) above this: refused
    max_pdu_bytes: int = 262_144  # received P-DATA-TF above this: aborted at the header (0: 16 MiB)
    pdu_timeout_s: float = 60.0  # a PDU must be complete this long after its first byte
    max_dataset_bytes: int = 512 * 2**20  # data bytes of one DIMSE message
    max_inflight_bytes: int = 1024 * 2**20  # data bytes held by all associations together

    @property
    def pdu_bound(self) -> int:
        return self.max_pdu_bytes or 16 * 2**20


class Refused(ConnectionAbortedError):
    """A guard closed the connection; the message is the reason code (no peer data)."""


class LogBudget:
    """At most ``per_second`` log lines per key and second: a flood of connections must not become a flood
    of log lines (disk, journald). Suppressed lines are still counted; the next line says how many."""

    def __init__(self, per_second: int = 20, clock: Any = time.monotonic) -> None:
        self.per_second, self.clock = per_second, clock
        self._windows: dict[str, tuple[int, int, int]] = {}  # key → (second, lines, suppressed)
        self._lock = threading.Lock()

    def admit(self, key: str) -> int | None:
        """None: suppress this line; otherwise log it, with the number suppressed before it."""
        now = int(self.clock())
        with self._lock:
            second, lines, suppressed = self._windows.get(key, (now, 0, 0))
            if second != now:
                second, lines = now, 0
            if lines >= self.per_second:
                self._windows[key] = (second, lines, suppressed + 1)
                return None
            self._windows[key] = (second, lines + 1, 0)
            return suppressed


_CLOSE_LOGS = LogBudget()


def count_close(reason: str, peer_ip: str, **context: Any) -> None:
    """Observer: count one early close, and log it unless this reason already logged its share this second."""
    CLOSED.labels(reason=reason).inc()
    suppressed = _CLOSE_LOGS.admit(reason)
    if suppressed is not None:
        extra = {"suppressed_before": suppressed} if suppressed else {}
        LOG.warning("connection_closed", reason=reason, peer_ip=peer_ip, **extra, **context)


# ---- PDUs ---------------------------------------------------------------------------------------------
def reject_pdu(result: int = 0x01, source: int = 0x01, reason: int = 0x01) -> bytes:
    """A-ASSOCIATE-RJ (PS3.8 §9.3.4); default permanent, service-user, no reason given."""
    return bytes((0x03, 0, 0, 0, 0, 4, 0, result, source, reason))


def abort_pdu(reason: int = 0x06) -> bytes:
    """A-ABORT from the service provider (PS3.8 §9.3.8); default: invalid PDU parameter value."""
    return bytes((0x07, 0, 0, 0, 0, 4, 0, 0, 0x02, reason))


def send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError, ValueError):
        sock.settimeout(1.0)
        sock.sendall(data)


def read_exact(
    sock: socket.socket, n: int, deadline: float, reason: str = "pdu_timeout", partial_ok: bool = False
) -> bytearray:
    """``n`` bytes before ``deadline`` (monotonic) or :class:`Refused`. At EOF: the bytes read so far when
    ``partial_ok`` (pynetdicom takes a short read as the transport closing), else Refused('peer_closed').
    The buffer received into is returned as it is (no copy: a photo's PDUs pass through here)."""
    buf = bytearray(n)
    with memoryview(buf) as view:
        got = 0
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Refused(reason)
            sock.settimeout(remaining)
            try:
                read = sock.recv_into(view[got:], min(n - got, RECV_CHUNK))
            except TimeoutError:
                raise Refused(reason) from None
            if not read:
                if partial_ok:
                    break
                raise Refused("peer_closed")
            got += read
    if got < n:
        del buf[got:]
    return buf


# ---- the association's socket -----------------------------------------------------------------------------
class ByteBudget:
    """Bytes all associations may hold at once; a reader waits (up to a deadline) for room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()

    def take(self, n: int, deadline: float) -> None:
        with self._cond:
            while self.used + n > self.capacity and self.used > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Refused("inflight_limit")
                self._cond.wait(remaining)
            self.used += n

    def give(self, n: int) -> None:
        if n:
            with self._cond:
                self.used -= n
                self._cond.notify_all()


@dataclass
class Guard:
    limits: AdmissionLimits
    budget: ByteBudget
    peer_ip: str
    prefix: bytearray
    header_next: bool = True
    pdu_type: int = 0
    deadline: float = 0.0
    message_bytes: int = 0  # data bytes of the DIMSE message being received
    held: int = 0  # bytes taken from the budget
    wakeup: Wakeup | None = None
    draining: bool = False  # the message went past max_dataset_bytes: its data is being dropped
    drained: int = 0  # data bytes dropped from that message
    marker: bytes = field(default_factory=lambda: DRAINED_MARKER + os.urandom(16))  # unguessable per socket


class GuardedSocket(AssociationSocket):
    """pynetdicom's AssociationSocket with deadlines, PDU and message bounds (see the module docstring).

    pynetdicom's DUL reads each PDU as ``recv(6)`` then ``recv(length)``; the guard follows that framing.
    Raising an OSError from ``recv`` makes the DUL close the transport (Evt17)."""

    _guard: Guard

    @classmethod
    def adopt(cls, sock: AssociationSocket, guard: Guard) -> GuardedSocket:
        """Turn the AssociationSocket pynetdicom just built into a guarded one (same object, same state)."""
        sock.__class__ = cls
        guarded: GuardedSocket = sock  # type: ignore[assignment]
        guarded._guard = guard
        weakref.finalize(guarded, _give_back, guard)  # a socket dropped without close() frees its bytes
        return guarded

    @property
    def ready(self) -> bool:
        """Data to read? With a wakeup, waits (up to 20 ms) for data or for something to send."""
        guard = self._guard
        if guard.prefix:
            return True
        if guard.wakeup is None or self.socket is None or not self._is_connected:
            return bool(super().ready)
        if isinstance(self.socket, ssl.SSLSocket) and self.socket.pending():
            return True
        try:
            readable, _, _ = select.select([self.socket, guard.wakeup.read_fd], [], [], 0.02)
        except (OSError, ValueError):
            self.event_queue.put("Evt17")  # the transport is gone
            return False
        if guard.wakeup.read_fd in readable:
            guard.wakeup.clear()
        return self.socket in readable

    def recv(self, nr_bytes: int) -> bytearray:
        guard = self._guard
        try:
            if guard.header_next:
                guard.deadline = time.monotonic() + guard.limits.pdu_timeout_s
                data = self._read(nr_bytes)
                if len(data) == 6:
                    self._check_header(data)
                    if self._may_cross_cap(data):
                        data = self._screen_pdata(data)
                return data
            data = self._read(nr_bytes)
            guard.header_next = True
            if guard.pdu_type == P_DATA_TF:
                self._account(data)
            return data
        except Refused as exc:
            self._refuse(str(exc))
            raise

    def send(self, bytestream: bytes) -> None:
        if self.socket is not None:
            with contextlib.suppress(OSError):
                self.socket.settimeout(self._guard.limits.pdu_timeout_s)  # a peer that never reads
        super().send(bytestream)

    def close(self) -> None:
        self._release()
        super().close()

    def _read(self, n: int) -> bytearray:
        guard = self._guard
        assert self.socket is not None
        if not guard.prefix:
            return read_exact(self.socket, n, guard.deadline, partial_ok=True)
        data = guard.prefix[:n]
        del guard.prefix[:n]
        if len(data) < n:
            data += read_exact(self.socket, n - len(data), guard.deadline, partial_ok=True)
        return data

    def _check_header(self, header: bytes) -> None:
        guard = self._guard
        pdu_type, _, length = HEADER.unpack(header)
        if pdu_type not in KNOWN_PDU_TYPES:
            raise Refused("unknown_pdu_type")
        bound = guard.limits.pdu_bound if pdu_type == P_DATA_TF else guard.limits.max_request_bytes
        if length > bound:
            raise Refused("pdu_too_large")
        guard.pdu_type, guard.header_next = pdu_type, False

    def _account(self, pdu: bytes) -> None:
        """Walk the PDVs of a P-DATA-TF: a command fragment starts a new message (the last one's bytes are
        released); data fragments count against the message cap and the shared budget."""
        guard, off, data_bytes = self._guard, 0, 0
        while off + 6 <= len(pdu):
            (length,) = struct.unpack_from(">L", pdu, off)
            control = pdu[off + 5]
            if control & 0x01:
                self._release()
                guard.message_bytes = 0
            else:
                data_bytes += max(0, length - 2)
            off += 4 + length
        if not data_bytes:
            return
        guard.message_bytes += data_bytes  # never past the cap: _screen_pdata saw to that
        guard.budget.take(data_bytes, guard.deadline)
        guard.held += data_bytes

    # ---- a message above max_dataset_bytes: drained, then answered by the handler --------------------
    def _may_cross_cap(self, header: bytes) -> bool:
        """Could this P-DATA-TF take its message past the cap? (Cheap: most PDUs are not screened.)"""
        guard = self._guard
        if guard.pdu_type != P_DATA_TF:
            return False
        (length,) = struct.unpack_from(">L", header, 2)
        return guard.draining or guard.message_bytes + length > guard.limits.max_dataset_bytes

    def _screen_pdata(self, header: bytearray) -> bytearray:
        """Read P-DATA-TF PDUs here until one is left for pynetdicom: data fragments above the cap are
        dropped, the last one becomes the marker. Returns the header pynetdicom reads next (body: prefix)."""
        guard = self._guard
        while True:
            (length,) = struct.unpack_from(">L", header, 2)
            body = self._read(length)
            if len(body) < length:  # the peer closed mid-PDU: pynetdicom sees the short read
                guard.prefix[:0] = body
                return header
            kept = self._drain_pdvs(body)
            if kept:
                guard.prefix[:0] = kept
                return bytearray(HEADER.pack(P_DATA_TF, 0, len(kept)))
            guard.deadline = time.monotonic() + guard.limits.pdu_timeout_s  # the next PDU's own deadline
            header = self._read(6)
            if len(header) < 6:
                return header
            self._check_header(header)
            if not self._may_cross_cap(header):
                return header

    def _drain_pdvs(self, body: bytearray) -> bytearray:
        """The PDV items of ``body`` pynetdicom gets: all but the data beyond the cap (PS3.8 §9.3.5.1)."""
        guard, kept, off = self._guard, bytearray(), 0
        cap, fitting = guard.limits.max_dataset_bytes, guard.message_bytes
        while off + 6 <= len(body):
            (length,) = struct.unpack_from(">L", body, off)
            item, context_id, control = body[off : off + 4 + length], body[off + 4], body[off + 5]
            off += 4 + length
            if control & 0x01:  # a command fragment: a new message starts (_account resets the count)
                kept += item
                guard.draining, guard.drained, fitting = False, 0, 0
                continue
            if not guard.draining and fitting + length - 2 <= cap:
                kept += item  # data that still fits
                fitting += length - 2
                continue
            guard.draining, guard.drained = True, guard.drained + length - 2
            if fitting + guard.drained > 2 * cap:  # a sender this far past the cap is not drained any longer
                raise Refused("dataset_too_large")
            if control & 0x02:  # the message's last fragment: pynetdicom completes it with the marker
                kept += struct.pack(">LBB", 2 + len(guard.marker), context_id, 0x02) + guard.marker
                guard.draining, guard.drained = False, 0
        return kept

    def _release(self) -> None:
        _give_back(self._guard)

    def _refuse(self, reason: str) -> None:
        self._release()
        if self.socket is not None:
            send_quietly(self.socket, abort_pdu(0x01 if reason == "unknown_pdu_type" else 0x06))
        count_close(reason, self._guard.peer_ip)


def was_drained(sock: Any, dataset: BytesIO) -> bool:
    """Whether the C-STORE dataset received through ``sock`` went past ``max_dataset_bytes`` and was drained
    (it ends with that socket's marker, which a sender cannot guess)."""
    guard: Guard | None = getattr(sock, "_guard", None)
    if guard is None:
        return False
    size = dataset.seek(0, 2)
    if size < len(guard.marker):
        dataset.seek(0)
        return False
    dataset.seek(size - len(guard.marker))
    tail = dataset.read()
    dataset.seek(0)
    return tail == guard.marker


def _give_back(guard: Guard) -> None:
    held, guard.held = guard.held, 0
    guard.budget.give(held)


# ---- event-driven waits instead of pynetdicom's 1 ms polling ---------------------------------------------
class Wakeup:
    """A self-pipe: the DUL thread waits on the socket *and* this, so a response queued by the association
    thread is sent at once instead of after the DUL's next 1 ms nap."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        weakref.finalize(self, _close_fds, self.read_fd, self.write_fd)

    def set(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.write_fd, b"\0")

    def clear(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.read_fd, 512):
                pass


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """The DUL's outgoing-primitive queue: every put wakes the DUL thread."""

    def __init__(self, wakeup: Wakeup) -> None:
        super().__init__()
        self.wakeup = wakeup

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.wakeup.set()


class NotifyingQueue(queue.Queue):  # type: ignore[type-arg]
    """The DUL's queue towards the association (A-RELEASE, A-ABORT, ...): a put also drops an empty message
    into the DIMSE queue, so the acceptor loop waiting there (PatientQueue) looks at it at once."""

    def __init__(self, messages: queue.Queue) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.messages = messages

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.messages.put((None, None))  # pynetdicom's loop skips an empty message


class PatientQueue(queue.Queue):  # type: ignore[type-arg]
    """The DIMSE message queue. pynetdicom's acceptor loop naps 1 ms and then polls it (``block=False``);
    here a poll waits up to ``wait_s`` for a message, so a complete C-STORE reaches its handler at once."""

    def __init__(self, wait_s: float = 0.02) -> None:
        super().__init__()
        self.wait_s = wait_s

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            return super().get(True, self.wait_s)
        return super().get(block, timeout)
