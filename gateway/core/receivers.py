"""Several receiver processes (``receive_processes: N`` > 1): the associations of the plain DICOM listener are
served in N processes, so that N associations are not bound to one core by the GIL (README "Several receiver
processes").

Why the main process keeps the door, and the receivers get screened sockets (SCM_RIGHTS) instead of each
accepting on a shared or SO_REUSEPORT socket: admission stays exactly what it is with one process. The doorman
(gateway/core/admission.py) accepts, bounds the pending connections per source and overall, reads the
A-ASSOCIATE-RQ; the gate (gateway/ops/policy.py) admits against the allow-list and counts every association
against ``max_associations`` and the per-source limit, in one place for all processes. Only then is the
connection handed to the receiver with the fewest associations (SO_REUSEPORT would hash connections to
processes, four associations could land on one, and every bound would have to be split). A receiver serves
it with the same code as the main process (:class:`~gateway.core.lean_scp.LeanAssociation`: negotiation,
PDUs, DIMSE, the intake: spool write + fdatasync, ledger commit, only then C-STORE Success) and reports its
end, which frees the gate's slot.

What is split or shared:
- the in-flight byte budget: each receiver gets an equal share of ``max_inflight_bytes`` (one more share is
  the main process's own, for a TLS listener, which stays in the main process: its TLS state cannot move);
- the ledger: a receiver sends each instance's row to the main process, whose committer thread writes all
  rows that arrived meanwhile, from every receiver, in one transaction (a group commit across processes) and
  answers each; the receiver sends C-STORE Success only after that answer. Why not a ledger connection per
  receiver: measured with two receivers (``strace -c``, 400 small objects over four associations), each
  commit by one made the other's SQLite connection drop its page cache and re-read it (pread64 2.2 → 13 per
  instance), smaller batches wrote more WAL frames (pwrite64 10.8 → 16 per instance), and the writers queued
  on a lock across processes: ~0.1-0.3 ms more CPU per instance than one process. A receiver still opens
  the ledger itself for its rare writes (a rejected dataset's quarantine record); receive-path writers then
  queue on a file lock (gateway/core/ledger/sqlite.py). (A cluster node, on PostgreSQL, receives in one
  process: a cluster scales by nodes; the config refuses ``receive_processes`` > 1 there.)
- the spool: a cross-process lock per digest stripe (gateway/core/spool.py);
- metrics: counted in each receiver, added up on every scrape (gateway/ops/metrics.py);
- logs: JSON lines on the same stderr, each with ``receiver``: its number.

A receiver dies with the main process, however that ends (kill -9 included): a parent-death signal, a pidfd
watch of the main process (gateway/core/lifeline.py) and the channel's end-of-file. A receiver that dies
alone is restarted; its associations' slots are freed, and what it had acknowledged is already durable.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.core.channel import Channel, pair
from gateway.core.config import GatewayConfig
from gateway.core.lean_scp import LeanServer, Setup, gate_request
from gateway.core.ledger import Ledger, ReceivedInstance, ReceiveResult
from gateway.core.pdu_guard import count_close, reject_pdu, send_quietly
from gateway.ops.metrics import RECEIVERS, Snapshot

LOG = structlog.get_logger(__name__)
READY_TIMEOUT_S = 120.0  # a receiver imports pydicom and pynetdicom, opens the ledger: seconds on a busy box
HAND_OVER_WAIT_S = 5.0  # no receiver ready (all restarting): the caller is refused after this long
RESPAWN_DELAY_S = 0.5  # between a receiver's end (or a failed start) and the next start
CONGESTED = (0x02, 0x03, 0x01)  # A-ASSOCIATE-RJ: transient, service-provider (presentation), congestion
MAX_BATCH = 64  # rows per ledger transaction, as the in-process group commit (gateway/core/ledger/group.py)
Row = tuple["Receiver", int, ReceivedInstance]  # from which receiver, its request id, the row


@dataclass(eq=False)
class Receiver:
    """One receiver process as the main process sees it."""

    index: int
    proc: subprocess.Popen[bytes]
    channel: Channel
    live: set[int] = field(default_factory=set)  # gate keys of the associations it serves
    ready: threading.Event = field(default_factory=threading.Event)
    metrics: Snapshot = field(default_factory=list)  # its last answer
    answered: threading.Event = field(default_factory=threading.Event)


class ReceiverPool:
    """Starts, feeds and restarts the receiver processes; ``release(key)`` frees a gate slot; ``ledger`` (the
    main process's receive-path handle) commits the rows they send."""

    def __init__(self, config: GatewayConfig, release: Any, budget_bytes: int, ledger: Ledger) -> None:
        self.config, self.release, self.budget_bytes, self.ledger = config, release, budget_bytes, ledger
        self.count = config.receive_processes
        self.receivers: dict[int, Receiver] = {}
        self.retired: list[Snapshot] = []  # the last counts of receivers that ended
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._exits: queue.Queue[Receiver | None] = queue.Queue()
        self._stopping = False
        self._rows: queue.Queue[Row | None] = queue.Queue()
        self._committer = threading.Thread(target=self._commit_rows, name="receiver-rows", daemon=True)
        # Spawned from this one long-lived thread: a parent-death signal fires when the *thread* that
        # started a process ends, so a receiver started by a short-lived thread would die with it.
        self._supervisor = threading.Thread(target=self._supervise, name="receivers", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> ReceiverPool:
        self._committer.start()
        self._supervisor.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        with self._changed:
            while self._ready_count() < self.count:
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"receiver processes not ready after {READY_TIMEOUT_S:.0f} s")
        LOG.info("receivers.started", processes=self.count)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._lock:
            self._stopping = True
            receivers = list(self.receivers.values())
        for receiver in receivers:
            with contextlib.suppress(OSError):
                receiver.channel.send(("stop",))
        deadline = time.monotonic() + timeout
        for receiver in receivers:
            try:
                receiver.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                receiver.proc.kill()
                receiver.proc.wait()
        self._exits.put(None)
        self._supervisor.join(timeout=5)
        self._rows.put(None)
        self._committer.join(timeout=5)
        RECEIVERS.set(0)

    def _supervise(self) -> None:
        """Start the receivers, then reap each that ends (freeing its slots) and start it again. A start
        that fails (fork or pipe refused: EAGAIN, EMFILE, ENOMEM) is retried, and never ends this thread:
        this thread alone frees the slots of receivers that die, so without it they would stay taken."""
        missing = set(range(self.count))
        while True:
            missing = {index for index in sorted(missing) if not self._try_spawn(index)}
            try:
                ended = self._exits.get(timeout=RESPAWN_DELAY_S if missing else None)
            except queue.Empty:
                continue
            if ended is None:
                return
            if self._ended(ended):
                time.sleep(RESPAWN_DELAY_S)  # a receiver that cannot start must not spin
                missing.add(ended.index)

    def _try_spawn(self, index: int) -> bool:
        """Start receiver ``index``; False (logged) when it could not be started (or the pool is stopping)."""
        with self._lock:
            if self._stopping:
                return True
        try:
            self._spawn(index)
        except Exception as exc:
            LOG.error("receiver.start_failed", receiver=index, error=type(exc).__name__)
            return False
        return True

    def _spawn(self, index: int) -> None:
        channel, theirs = pair()
        cmd = [sys.executable, "-m", "gateway.core.receiver_process", str(theirs.fileno()), str(os.getpid())]
        try:
            proc = subprocess.Popen(cmd, pass_fds=(theirs.fileno(),))
        except BaseException:
            channel.close()
            raise
        finally:
            theirs.close()
        receiver = Receiver(index, proc, channel)
        with self._lock:
            self.receivers[index] = receiver
        listener = threading.Thread(
            target=self._listen, args=(receiver,), name=f"receiver-{index}", daemon=True
        )
        try:
            listener.start()
        except BaseException:  # nobody would hear it end: undo
            with self._lock:
                del self.receivers[index]
            proc.kill()
            proc.wait()
            channel.close()
            raise
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        with contextlib.suppress(OSError):  # it died already: its listener hears the end and reports it
            channel.send(("setup", self.config.model_dump_json(), level, index, self.budget_bytes))

    def _ended(self, receiver: Receiver) -> bool:
        """A receiver's channel closed: reap it and free its associations' slots; True when it is to be
        started again (the pool is not stopping)."""
        code = receiver.proc.wait()
        with self._lock:
            if self.receivers.get(receiver.index) is receiver:
                del self.receivers[receiver.index]
            keys, receiver.live = list(receiver.live), set()
            self.retired.append(receiver.metrics)
            stopping = self._stopping
            RECEIVERS.set(self._ready_count())
        for key in keys:
            self.release(key)
        if not stopping:
            LOG.error("receiver.exited", receiver=receiver.index, returncode=code, associations=len(keys))
        return not stopping

    # ---- messages from a receiver ------------------------------------------------------------------------
    def _listen(self, receiver: Receiver) -> None:
        while True:
            try:
                got = receiver.channel.receive()
            except (OSError, EOFError, ValueError):
                got = None
            if got is None:
                break
            message, _ = got
            if message[0] == "record":
                self._rows.put((receiver, message[1], message[2]))
            elif message[0] == "done":
                self._done(receiver, message[1])
            elif message[0] == "metrics":
                receiver.metrics = message[1]
                receiver.answered.set()
            elif message[0] == "ready":
                with self._changed:
                    receiver.ready.set()
                    RECEIVERS.set(self._ready_count())
                    self._changed.notify_all()
        receiver.channel.close()
        receiver.answered.set()
        self._exits.put(receiver)

    def _done(self, receiver: Receiver, key: int) -> None:
        with self._changed:
            if key not in receiver.live:
                return
            receiver.live.discard(key)
            self._changed.notify_all()
        self.release(key)

    # ---- the receivers' ledger rows ------------------------------------------------------------------------
    def _commit_rows(self) -> None:
        """Commit every row queued (up to MAX_BATCH) in one transaction, then answer each receiver."""
        while (first := self._rows.get()) is not None:
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    row = self._rows.get_nowait()
                except queue.Empty:
                    break
                if row is None:
                    self._rows.put(None)  # stop after this batch
                    break
                batch.append(row)
            for (receiver, rid, _), (result, error) in zip(batch, self._commit(batch), strict=True):
                self._answer(receiver, rid, result, error)

    @staticmethod
    def _answer(receiver: Receiver, rid: int, result: ReceiveResult | None, error: str) -> None:
        """Answer one row. The receiver's association thread waits for this answer with no deadline (its
        slot held), so an answer that cannot go as it is goes as a failure (0xA700 there), never not at all:
        an exception here used to end this thread and leave every receiver's associations waiting."""
        try:
            receiver.channel.send(("recorded", rid, result, error))
        except OSError:
            pass  # it died: its associations ended with it
        except Exception as exc:
            LOG.error("receivers.answer_failed", receiver=receiver.index, error=type(exc).__name__)
            with contextlib.suppress(OSError):
                receiver.channel.send(("recorded", rid, None, type(exc).__name__))

    def _commit(self, batch: list[Row]) -> list[tuple[ReceiveResult | None, str]]:
        """(result, "") per row, or (None, why) for a row the ledger refused: a failed batch is retried row
        by row, so one row's failure (its 0xA700) stays its own."""
        try:
            return [(r, "") for r in self.ledger.record_received_many([item for _, _, item in batch])]
        except Exception:
            if len(batch) == 1:
                return [(None, "ledger-write-failed")]
        out: list[tuple[ReceiveResult | None, str]] = []
        for _, _, item in batch:
            try:
                out.append((self.ledger.record_received(item), ""))
            except Exception as exc:
                out.append((None, type(exc).__name__))
        return out

    def _ready_count(self) -> int:
        return sum(1 for r in self.receivers.values() if r.ready.is_set())

    # ---- to a receiver -----------------------------------------------------------------------------------
    def hand_over(self, sock: socket.socket, address: tuple[str, int], request: bytes, key: int) -> bool:
        """Pass an admitted connection to the receiver serving the fewest associations; False when none
        took it (the caller frees the gate's slot, which may already be free, and refuses)."""
        deadline = time.monotonic() + HAND_OVER_WAIT_S
        with self._changed:
            while not (ready := [r for r in self.receivers.values() if r.ready.is_set()]):
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    return False
            receiver = min(ready, key=lambda r: (len(r.live), r.index))
            receiver.live.add(key)
        sent = False
        try:
            receiver.channel.send(("conn", key, address, bytes(request)), fds=(sock.fileno(),))
            sent = True
        except OSError:  # it just died (its listener thread restarts it): the caller retries later
            pass
        finally:  # not sent (or raised): the receiver does not hold the key, so its end will not free it
            if not sent:
                with self._lock:
                    receiver.live.discard(key)
        return sent

    def snapshots(self, timeout: float = 2.0) -> list[Snapshot]:
        """Every receiver's counters and histograms (asked now), and those of receivers that ended."""
        with self._lock:
            asked = [r for r in self.receivers.values() if r.ready.is_set()]
            retired = list(self.retired)
        for receiver in asked:
            receiver.answered.clear()
            with contextlib.suppress(OSError):
                receiver.channel.send(("metrics",))
        deadline = time.monotonic() + timeout
        for receiver in asked:
            receiver.answered.wait(max(0.0, deadline - time.monotonic()))
        return retired + [r.metrics for r in asked]

    def live(self) -> dict[int, int]:
        """Associations per receiver (by its number)."""
        with self._lock:
            return {i: len(r.live) for i, r in self.receivers.items()}

    def ready(self) -> int:
        with self._lock:
            return self._ready_count()


class HandoffServer(LeanServer):
    """The plain listener of a gateway with receiver processes: screened by the doorman and admitted by the
    gate here, served by a receiver process (see the module docstring)."""

    def __init__(self, address: tuple[str, int], setup: Setup, pool: ReceiverPool) -> None:
        super().__init__(address, setup)
        self.pool = pool
        self._keys = itertools.count(1)

    def _serve(self, sock: socket.socket, address: tuple[str, int], request: bytes) -> None:
        """Admit and hand over; the gate's slot is freed here on every path but one: a receiver took the
        connection (its end, or the receiver's, frees it). As LeanAssociation.serve in one process."""
        key = -next(self._keys)  # negative: never an id() of an association served in this process
        peer_ip = str(address[0])
        handed, failure = False, ""
        try:
            if gate_request(self.setup.gate, key, request, sock, peer_ip) is None:
                return
            handed = self.pool.hand_over(sock, address, request, key)
            failure = "" if handed else "no_receiver_ready"
        except Exception as exc:  # fail closed: the caller is refused (and may retry), the slot freed below
            LOG.error("receivers.hand_over_failed", error=type(exc).__name__, peer_ip=peer_ip)
            failure = "hand_over_failed"
        finally:
            if not handed:  # releasing a key the gate does not hold (refused, never admitted) frees nothing
                self.setup.gate.release(key)  # before the answer: a caller that retries at once finds it free
            if failure:
                count_close(failure, peer_ip)
                send_quietly(sock, reject_pdu(*CONGESTED))
            sock.close()  # this process's copy: the receiver holds its own

    def shutdown(self) -> None:
        super().shutdown()
        self.pool.stop()
