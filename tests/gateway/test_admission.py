"""The receive path under attack, with a raw-socket client: silent, half-open and trickling connections, PDU
headers that claim gigabytes, malformed A-ASSOCIATE-RQs, partial PDUs held open
(gateway/core/admission.py)."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from dicom_rules import FolderDestination
from gateway.core.admission import request_problem
from gateway.core.config import CallerRule
from gateway.core.pdu_guard import CLOSED
from gateway.ops.metrics import RECEIVED
from tests.conftest import DCMTK_ENV, Study, make_small_sc, write_study
from tests.gateway.conftest import gateway_config, instance_states, rules_to, storescu, wait_until

pytestmark = pytest.mark.integration

VERIFICATION = b"1.2.840.10008.1.1"
# What the attacks of issue 12 did to an allowed sender: refused, or held up for the ACSE timeout (30 s) or
# for ever. A sender that takes less than half of that was not held up; the rest is the scheduler (a loaded
# 2-core machine). The returncode checks catch a refusal; this bound catches a sender left waiting.
NOT_HELD_UP_S = 15.0
# How late a deadline may fire on a loaded machine (the thread that enforces it must be scheduled, the client
# must see the close) and still count as kept: the regressions these catch close never, or at the 30 s ACSE
# / 60 s DIMSE timeout, or (lower bounds) at another, shorter deadline.
LATE_S = 5.0
IMPLICIT_LE = b"1.2.840.10008.1.2"


def _item(kind: int, body: bytes) -> bytes:
    return bytes((kind, 0)) + struct.pack(">H", len(body)) + body


def associate_rq(calling: str = "HOSP_PACS", called: str = "VERA_GW", context_id: int = 1) -> bytes:
    """A minimal A-ASSOCIATE-RQ (PS3.8 §9.3.2) offering Verification in Implicit VR Little Endian."""
    app = _item(0x10, b"1.2.840.10008.3.1.1.1")
    pc = _item(0x20, bytes((context_id, 0, 0, 0)) + _item(0x30, VERIFICATION) + _item(0x40, IMPLICIT_LE))
    user = _item(0x50, _item(0x51, struct.pack(">L", 16384)) + _item(0x52, b"1.2.826.0.1.3680043.9.1"))
    body = struct.pack(">HH", 1, 0) + called.encode().ljust(16) + calling.encode().ljust(16) + bytes(32)
    body += app + pc + user
    return bytes((0x01, 0)) + struct.pack(">L", len(body)) + body


def rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def closed_count(reason: str) -> float:
    return CLOSED.labels(reason=reason)._value.get()


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_pdu(sock: socket.socket, timeout: float = 10) -> bytes:
    """The next PDU, or b'' when the gateway closed the connection."""
    sock.settimeout(timeout)
    data = b""
    try:
        while len(data) < 6:
            chunk = sock.recv(6 - len(data))
            if not chunk:
                return b""
            data += chunk
        (length,) = struct.unpack(">L", data[2:6])
        while len(data) < 6 + length:
            chunk = sock.recv(6 + length - len(data))
            if not chunk:
                return b""
            data += chunk
    except ConnectionResetError:
        return b""
    return data


def is_closed(sock: socket.socket, timeout: float) -> bool:
    """True when the gateway closes (or aborts) the connection within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pdu = read_pdu(sock, max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            return False
        if pdu == b"" or pdu[0] == 0x07:
            return True
    return False


def send_stream(sock: socket.socket, total: int, chunk: int = 1 << 20) -> int:
    """Send up to ``total`` zero bytes; returns how many went out before the gateway shut the door."""
    block, sent = bytes(chunk), 0
    sock.settimeout(10)
    try:
        while sent < total:
            sent += sock.send(block[: min(chunk, total - sent)])
    except OSError:
        pass
    return sent


@pytest.fixture
def allow_listed(tmp_path: Path, gateway):
    """A gateway that only accepts HOSP_PACS from 127.0.0.1, with short admission and network timeouts."""
    return allow_listed_gateway(tmp_path, gateway)


def allow_listed_gateway(tmp_path: Path, gateway, **extra: Any) -> tuple[Any, Any]:
    """(config, service) of ``allow_listed`` with ``extra`` settings (the receiver tests add theirs)."""
    config = gateway_config(
        tmp_path / "gw",
        quiet_period_s=600,
        max_wait_s=600,
        workers=0,
        allowed_callers=(CallerRule(ae_title="HOSP_PACS", networks=("127.0.0.1/32",)),),
        admission_timeout_s=3.0,
        network_timeout_s=2.0,
        max_pdu=65536,
        **extra,
    )
    return config, gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))


@contextmanager
def attackers(port: int, count: int = 50, source: str = "127.0.0.1") -> Iterator[list[socket.socket]]:
    """``count`` connections from one address: a third silent, a third with 5 bytes of a PDU header, a third
    trickling an A-ASSOCIATE-RQ one byte every 100 ms; each reconnects when the gateway closes it."""
    stop = threading.Event()
    socks: list[socket.socket] = []

    def one(kind: int) -> None:
        rq = associate_rq()
        while not stop.is_set():
            try:
                sock = connect(port, source)
            except OSError:
                time.sleep(0.05)
                continue
            socks.append(sock)
            try:
                if kind == 1:
                    sock.sendall(rq[:5])
                for i in range(len(rq) if kind == 2 else 0):
                    if stop.wait(0.1):
                        break
                    sock.sendall(rq[i : i + 1])
                sock.settimeout(0.2)
                while not stop.is_set():
                    try:
                        if sock.recv(64) == b"":
                            break
                    except TimeoutError:
                        continue
            except OSError:
                pass
            finally:
                sock.close()

    threads = [threading.Thread(target=one, args=(i % 3,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield socks
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def test_fifty_silent_half_open_and_trickling_connections_do_not_block_an_allowed_sender(
    tmp_path: Path, allow_listed
) -> None:
    config, service = allow_listed
    files = write_study(tmp_path / "in", [make_small_sc(study=Study(), number=i) for i in range(5)])
    evicted_before = closed_count("pending_per_source_limit")
    with attackers(service.port, 50):  # from the allowed sender's own address: the hardest case
        wait_until(lambda: closed_count("pending_per_source_limit") > evicted_before, timeout=30)
        time.sleep(config.admission_timeout_s + 0.5)  # past the first deadline: every kind has been cut
        for _ in range(2):
            started = time.monotonic()
            result = storescu(service.port, files, timeout=60)
            assert result.returncode == 0, result.stderr
            assert time.monotonic() - started < NOT_HELD_UP_S  # ~0.2-0.5 s measured, at load 12 too
        assert service.server.doorman.pending() <= config.max_pending_per_source
    assert sum(instance_states(config).values()) == 5
    cut = closed_count("pending_per_source_limit") + closed_count("request_timeout") - evicted_before
    assert cut > 50  # every attacker connection was closed at least once (and logged, counted)


def test_a_silent_connection_is_closed_at_the_request_deadline(allow_listed) -> None:
    config, service = allow_listed
    before = closed_count("request_timeout")
    sock = connect(service.port)
    started = time.monotonic()
    assert is_closed(sock, config.admission_timeout_s + LATE_S + 3)
    # not before the deadline (nor at the 2 s network timeout), and not long after it
    assert config.admission_timeout_s - 0.5 < time.monotonic() - started < config.admission_timeout_s + LATE_S
    wait_until(lambda: closed_count("request_timeout") == before + 1, timeout=30)


def test_connections_that_connect_and_close_leave_no_slot_taken(tmp_path: Path, allow_listed) -> None:
    config, service = allow_listed
    for _ in range(3 * config.max_associations):
        connect(service.port).close()
    files = write_study(tmp_path / "in", [make_small_sc()])
    started = time.monotonic()
    assert storescu(service.port, files, timeout=60).returncode == 0
    assert time.monotonic() - started < NOT_HELD_UP_S  # the bug: every sender blocked for ~30 s
    wait_until(lambda: service.server.doorman.pending() == 0, timeout=30)


def test_a_4gb_pdu_header_in_an_association_is_aborted_at_once_and_memory_stays_flat(allow_listed) -> None:
    _, service = allow_listed
    aborted = closed_count("pdu_too_large")
    sock = connect(service.port)
    sock.sendall(associate_rq())
    assert read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
    before = rss_mb()
    sock.sendall(bytes((0x04, 0)) + struct.pack(">L", 0xFFFFFFFF))
    sent = send_stream(sock, 256 << 20)
    assert sent < 256 << 20  # the door shut long before the claimed bytes went in
    assert rss_mb() - before < 64  # generous: nothing of the stream was buffered
    # aborted at the header ("at once": for that reason, not at the 2 s network timeout), its slot freed
    wait_until(lambda: closed_count("pdu_too_large") == aborted + 1, timeout=30)
    wait_until(lambda: service.gate.active() == 0, timeout=30)


def test_an_oversized_associate_rq_is_refused_at_its_header(allow_listed) -> None:
    _, service = allow_listed
    before_rss, before = rss_mb(), closed_count("request_too_large")
    sock = connect(service.port)
    sock.sendall(bytes((0x01, 0)) + struct.pack(">L", 64 << 20))
    sent = send_stream(sock, 64 << 20)
    assert sent < 64 << 20
    assert rss_mb() - before_rss < 32
    wait_until(lambda: closed_count("request_too_large") == before + 1, timeout=30)
    sock.close()


def test_a_partial_pdata_held_open_is_closed_within_the_network_timeout(allow_listed) -> None:
    config, service = allow_listed
    sock = connect(service.port)
    sock.sendall(associate_rq())
    assert read_pdu(sock)[0] == 0x02
    assert service.gate.active() == 1
    sock.sendall(bytes((0x04, 0, 0, 0, 0)))  # 5 of the 6 header bytes, then silence
    started = time.monotonic()
    assert is_closed(sock, config.network_timeout_s + LATE_S + 3)
    assert time.monotonic() - started < config.network_timeout_s + LATE_S  # the bug: held for > 130 s
    wait_until(lambda: service.gate.active() == 0, timeout=30)


def test_a_pdata_trickled_one_byte_a_second_is_closed_within_the_network_timeout(allow_listed) -> None:
    config, service = allow_listed
    sock = connect(service.port)
    sock.sendall(associate_rq())
    assert read_pdu(sock)[0] == 0x02
    pdu = bytes((0x04, 0)) + struct.pack(">L", 100) + bytes(100)
    started, closed = time.monotonic(), False
    for byte in pdu:
        try:
            sock.sendall(bytes((byte,)))
        except OSError:
            closed = True
            break
        if is_closed(sock, 0.5):
            closed = True
            break
    assert closed and time.monotonic() - started < config.network_timeout_s + LATE_S


def test_an_even_presentation_context_id_gets_an_associate_rj(allow_listed) -> None:
    _, service = allow_listed
    sock = connect(service.port)
    sock.sendall(associate_rq(context_id=2))
    pdu = read_pdu(sock)
    assert pdu[:1] == b"\x03"  # A-ASSOCIATE-RJ, not silence
    assert service.gate.active() == 0


def test_a_valid_rq_from_a_caller_not_on_the_list_is_rejected_and_counted(allow_listed) -> None:
    _, service = allow_listed
    sock = connect(service.port)
    sock.sendall(associate_rq(calling="INTRUDER"))
    assert read_pdu(sock)[:1] == b"\x03"


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda rq: rq[:-3], "request_malformed"),
        (lambda rq: associate_rq(context_id=4), "even_context_id"),
        (lambda rq: rq[:6] + rq[6:60], "request_too_short"),
    ],
)
def test_request_problem_names_what_is_wrong(mutate, problem: str) -> None:
    assert request_problem(associate_rq()) is None
    bad = mutate(associate_rq())
    bad = bad[:2] + struct.pack(">L", len(bad) - 6) + bad[6:]
    assert request_problem(bad) == problem


def received_count(outcome: str) -> float:
    return RECEIVED.labels(outcome=outcome)._value.get()


@pytest.mark.parametrize("max_pdu", [16384, 262144])  # drained over many PDUs / within the one that crosses
def test_a_dataset_above_the_configured_size_gets_0xA701_and_the_association_goes_on(
    tmp_path: Path, gateway, max_pdu: int
) -> None:
    config = gateway_config(
        tmp_path / "gw",
        quiet_period_s=600,
        max_wait_s=600,
        workers=0,
        max_dataset_bytes=65536,
        max_pdu=max_pdu,
    )
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    big = make_small_sc(side=200, number=1)  # 120 kB of pixels: past the 64 kB cap, within twice the cap
    small = make_small_sc(side=32, number=2)
    before = received_count("too_large")
    ae = AE(ae_title="HOSP_PACS")
    ae.add_requested_context(big.SOPClassUID, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", service.port, ae_title="VERA_GW")
    assert assoc.is_established
    try:
        refused = assoc.send_c_store(big)
        stored = assoc.send_c_store(small)  # same association: the drained message left it in step
    finally:
        assoc.release()
    assert refused.Status == 0xA701
    assert "65536" in refused.ErrorComment
    assert stored.Status == 0x0000
    assert received_count("too_large") == before + 1
    assert sum(instance_states(config).values()) == 1


def test_storescu_sees_0xA701_for_the_oversized_file_and_stores_the_next_one(tmp_path: Path, gateway) -> None:
    config = gateway_config(
        tmp_path / "gw", quiet_period_s=600, max_wait_s=600, workers=0, max_dataset_bytes=65536, max_pdu=16384
    )
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    files = write_study(
        tmp_path / "in", [make_small_sc(side=200, number=1), make_small_sc(side=32, number=2)]
    )
    cmd = ["/usr/bin/storescu", "-v", "-nh", "-xy", "-aet", "HOSP_PACS", "-aec", "VERA_GW", "127.0.0.1"]
    result = subprocess.run(
        [*cmd, str(service.port), *map(str, files)], capture_output=True, text=True, timeout=60, env=DCMTK_ENV
    )
    log = result.stdout + result.stderr
    assert "0xa701" in log.lower(), log[-2000:]
    assert "Received Store Response (Success)" in log, log[-2000:]
    assert "Abort" not in log
    assert sum(instance_states(config).values()) == 1


def test_a_dataset_past_twice_the_configured_size_is_aborted_and_the_next_association_stores(
    tmp_path: Path, gateway
) -> None:
    config = gateway_config(
        tmp_path / "gw", quiet_period_s=600, max_wait_s=600, workers=0, max_dataset_bytes=65536
    )
    service = gateway(config, rules=rules_to(FolderDestination("out", tmp_path / "out")))
    big = write_study(tmp_path / "big", [make_small_sc(side=256)])  # ~196 kB: more than the cap to drain
    small = write_study(tmp_path / "small", [make_small_sc(side=32)])
    before = closed_count("dataset_too_large")
    assert storescu(service.port, big, timeout=30).returncode != 0
    wait_until(lambda: closed_count("dataset_too_large") == before + 1, timeout=30)
    assert storescu(service.port, small, timeout=30).returncode == 0
    assert sum(instance_states(config).values()) == 1


def test_close_log_lines_are_budgeted_per_reason_and_say_how_many_were_suppressed() -> None:
    from gateway.core.pdu_guard import LogBudget

    now = [100.0]
    budget = LogBudget(per_second=2, clock=lambda: now[0])
    assert [budget.admit("x") for _ in range(5)] == [0, 0, None, None, None]
    assert budget.admit("y") == 0  # each reason has its own share
    now[0] += 1
    assert budget.admit("x") == 3  # the first line of the next second reports the suppressed ones
