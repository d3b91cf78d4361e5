"""The bare-socket C-ECHO SCU (gateway/core/verification.py) against real peers: Orthanc, DCMTK storescp
accepting and refusing, and a socket that answers with nonsense."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.core.verification import EchoPeer, probe
from tests.conftest import DCMTK_ENV, free_port


def peer_at(port: int, called_ae: str = "ANY_SCP", timeout_s: float = 5.0) -> EchoPeer:
    return EchoPeer("127.0.0.1", port, called_ae, "VERA_GW", timeout_s, timeout_s)


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(*options: str) -> int:
        port = free_port()
        procs.append(
            subprocess.Popen(
                ["/usr/bin/storescp", *options, "-od", str(tmp_path), str(port)],
                env=DCMTK_ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("storescp did not start")

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_echo_succeeds_against_orthanc_and_dcmtk(orthanc: Any, storescp: Any) -> None:
    server = orthanc()
    ok, detail = probe(peer_at(server.dicom_port, server.aet))
    assert ok and detail.endswith(" ms")
    assert probe(peer_at(storescp()))[0]


def test_a_refused_association_is_a_failure_with_the_reject_reason(storescp: Any) -> None:
    ok, detail = probe(peer_at(storescp("--refuse")))
    assert not ok and detail.startswith("association rejected")


def test_a_dead_port_fails_with_the_socket_error() -> None:
    ok, detail = probe(peer_at(free_port()))
    assert (ok, detail) == (False, "Connection refused")


def serve_once(reply: bytes) -> int:
    """A TCP server that reads the A-ASSOCIATE-RQ, sends ``reply`` and holds the connection a moment."""
    listener = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)
            time.sleep(1)
        listener.close()

    threading.Thread(target=answer, daemon=True).start()
    return listener.getsockname()[1]


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (struct.pack(">BxI4x", 0x07, 4), "association aborted by the peer"),
        (struct.pack(">BxI", 0x02, 0xFFFFFFF0), "too large"),  # never buffered
        (struct.pack(">BxI", 0x09, 2) + b"\0\0", "unexpected PDU type 0x09"),
    ],
)
def test_a_peer_answering_nonsense_fails_without_buffering_it(reply: bytes, reason: str) -> None:
    ok, detail = probe(peer_at(serve_once(reply)))
    assert not ok and reason in detail


def test_a_silent_peer_fails_at_the_reply_timeout() -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts in the kernel backlog, never answers
    with listener:
        started = time.monotonic()
        ok, detail = probe(peer_at(listener.getsockname()[1], timeout_s=0.5))
    assert (ok, detail) == (False, "no answer within the timeout")
    assert time.monotonic() - started < 3
