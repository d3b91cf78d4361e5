"""A receiver process (``receive_processes`` > 1; the main process's side: gateway/core/receivers.py).

    python -m gateway.core.receiver_process CHANNEL_FD MAIN_PID

It serves the associations the main process hands it (already screened by the doorman and admitted by the
gate) with the same :class:`~gateway.core.lean_scp.LeanAssociation` and intake as the main process, one
thread per association, and reports each association's end. It ends with the main process, however that
ends: a parent-death signal, a pidfd watch (gateway/core/lifeline.py) and the channel's end-of-file.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import sys
import threading
from typing import Any

from gateway.core.lifeline import die_with_parent, exit_with


class AdmittedGate:
    """The gate as a receiver sees it: the main process's gate already admitted every association it hands
    over and frees the slot when told the association ended."""

    def admit(self, key: int, calling_ae: str, called_ae: str, peer_ip: str) -> None:
        return None

    def release(self, key: int) -> None:
        return None


class RemoteReceipts:
    """The intake's ``record_received`` in a receiver: the row goes to the main process, which commits it
    with the other receivers' rows (gateway/core/receivers.py); this returns once that commit answered, so
    C-STORE Success still follows the ledger commit."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._waiting: dict[int, list[Any]] = {}  # request id → [wake lock, result, error]
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def record_received(self, item: Any) -> Any:
        from gateway.core.ledger import LedgerError

        rid, waiter = next(self._ids), [threading.Lock(), None, ""]
        waiter[0].acquire()
        with self._lock:
            self._waiting[rid] = waiter
        self.channel.send(("record", rid, item))
        waiter[0].acquire()  # released by answer()
        if waiter[2]:
            raise LedgerError(f"main process: {waiter[2]}")
        return waiter[1]

    def answer(self, rid: int, result: Any, error: str) -> None:
        with self._lock:
            waiter = self._waiting.pop(rid)
        waiter[1], waiter[2] = result, error
        waiter[0].release()


class Receiver:
    def __init__(self, channel: Any, setup: Any) -> None:
        self.channel, self.setup = channel, setup
        self._live: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()

    def run(self) -> None:
        """Take messages until told to stop (or the main process is gone)."""
        from gateway.ops.metrics import snapshot

        while True:
            try:
                got = self.channel.receive()
            except (OSError, EOFError, ValueError):
                got = None
            if got is None:  # the main process is gone: nobody will count what is received here
                os._exit(1)
            message, fds = got
            if message[0] == "recorded":
                self.setup.intake.receipts.answer(*message[1:])
            elif message[0] == "conn":
                self._start(message[1:], fds)
            elif message[0] == "metrics":
                self.channel.send(("metrics", snapshot()))
            elif message[0] == "stop":
                self._stop()
                return

    def _start(self, conn: tuple[Any, ...], fds: list[int]) -> None:
        """Serve a handed-over connection on its own thread. When that cannot start (no descriptor came:
        this process is at its open-file limit and the kernel dropped it; no thread to be had), the
        connection is closed and its end reported at once, so the main process frees the slot: one
        connection's failure must not end this process and every association it serves."""
        key = conn[0]
        sock = socket.socket(fileno=fds[0]) if len(fds) == 1 else None
        thread = threading.Thread(target=self._serve, args=(sock, *conn), name="association", daemon=True)
        try:
            if sock is None:
                raise OSError(f"{len(fds)} descriptors with a connection")
            with self._lock:
                self._threads.add(thread)
            thread.start()
        except (OSError, RuntimeError) as exc:
            from gateway.core.pdu_guard import count_close

            with self._lock:
                self._threads.discard(thread)
            if sock is not None:
                sock.close()
            for fd in fds if sock is None else []:
                with contextlib.suppress(OSError):
                    os.close(fd)
            count_close("hand_over_failed", str(conn[1][0]), error=type(exc).__name__)
            with contextlib.suppress(OSError):
                self.channel.send(("done", key))

    def _serve(self, sock: socket.socket, key: int, address: tuple[str, int], request: bytes) -> None:
        from gateway.core.lean_scp import LeanAssociation

        with self._lock:
            self._live.add(sock)
        try:
            LeanAssociation(self.setup, sock, address, request).serve()
        finally:
            with self._lock:
                self._live.discard(sock)
                self._threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                self.channel.send(("done", key))

    def _stop(self, timeout: float = 5.0) -> None:
        """As the single-process listener stops: wake every association's read; its thread closes it."""
        with self._lock:
            live, threads = list(self._live), list(self._threads)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout)


def build_setup(config: Any, budget_bytes: int, channel: Any) -> Any:
    """The receiver's own intake (spool, quarantine, a ledger connection for its rare writes; the rows of
    received instances go to the main process), limits, byte budget share and negotiation cache; the gate
    is the main process's."""
    from anonymizer.keys import KeyRing, load_or_create_secret
    from gateway.core.intake import open_intake
    from gateway.core.lean_scp import Setup
    from gateway.core.negotiation import Negotiations
    from gateway.core.pdu_guard import ByteBudget
    from gateway.core.scp import admission_limits, association_limits, build_ae

    intake = open_intake(config, KeyRing(load_or_create_secret(config.secret_path)))
    intake.receipts = RemoteReceipts(channel)  # type: ignore[assignment]
    return Setup(
        intake=intake,
        gate=AdmittedGate(),  # type: ignore[arg-type]
        limits=admission_limits(config),
        association=association_limits(config),
        budget=ByteBudget(budget_bytes),
        negotiations=Negotiations(build_ae(config).supported_contexts, config.max_pdu),
    )


def main(argv: list[str]) -> None:
    channel_fd, main_pid = int(argv[0]), int(argv[1])
    die_with_parent()
    exit_with(main_pid)  # ends this process at once when the main process has already gone
    from gateway.core.channel import Channel
    from gateway.core.config import GatewayConfig
    from gateway.ops.logs import configure_logging

    channel = Channel(socket.socket(fileno=channel_fd))
    got = channel.receive()
    if got is None:
        os._exit(1)
    _, config_json, level, index, budget_bytes = got[0]
    configure_logging(level, receiver=index)
    setup = build_setup(GatewayConfig.model_validate_json(config_json), budget_bytes, channel)
    channel.send(("ready",))
    Receiver(channel, setup).run()


if __name__ == "__main__":
    main(sys.argv[1:])
