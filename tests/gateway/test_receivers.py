"""Several receiver processes (``receive_processes: 2``, gateway/core/receivers.py): a real DCMTK study ends
forwarded, the admission bounds and association limits hold across the processes, a receiver killed alone is
replaced and frees its slots, kill -9 of the main process leaves no receiver alive, and what a receiver
acknowledged survives kill -9 of the whole gateway."""

from __future__ import annotations

import errno
import os
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.core.config import ConfigError, load_config
from gateway.core.spool import ContentStore
from gateway.ops.metrics import MergedRegistry
from tests.conftest import Study, make_small_sc, write_study
from tests.gateway.conftest import (
    GatewayProcess,
    gateway_config,
    instance_states,
    ledger_of,
    storescu,
    wait_until,
)
from tests.gateway.test_admission import (
    LATE_S,
    NOT_HELD_UP_S,
    allow_listed_gateway,
    associate_rq,
    attackers,
    closed_count,
    connect,
    is_closed,
    read_pdu,
    rss_mb,
    send_stream,
)
from tests.gateway.test_lifeline import assert_descendants_end_with_the_main_process

pytestmark = pytest.mark.integration


@pytest.fixture
def two_receivers(tmp_path: Path, gateway):
    """An allow-listed gateway whose associations are served by two receiver processes."""
    return allow_listed_gateway(tmp_path, gateway, receive_processes=2, max_associations=2)


def hold_association(port: int) -> Any:
    sock = connect(port)
    sock.sendall(associate_rq())
    assert read_pdu(sock)[0] == 0x02  # A-ASSOCIATE-AC
    return sock


def test_association_limits_count_every_receiver_process_together(tmp_path: Path, two_receivers) -> None:
    config, service = two_receivers
    held = [hold_association(service.port) for _ in range(config.max_associations)]
    assert sorted(service.receivers.live().values()) == [1, 1]  # one each: the least busy gets the next
    third = connect(service.port)
    third.sendall(associate_rq())
    assert read_pdu(third)[:1] == b"\x03"  # A-ASSOCIATE-RJ: the limit counts both processes
    files = write_study(tmp_path / "in", [make_small_sc(study=Study(), number=i) for i in range(3)])
    held.pop().close()
    wait_until(lambda: service.gate.active() == 1, timeout=30)  # the receiver reported the end: slot free
    assert storescu(service.port, files, timeout=30).returncode == 0
    assert sum(instance_states(config).values()) == 3


def test_fifty_attackers_do_not_block_an_allowed_sender_of_a_multi_process_gateway(
    tmp_path: Path, two_receivers
) -> None:
    config, service = two_receivers
    files = write_study(tmp_path / "in", [make_small_sc(study=Study(), number=i) for i in range(5)])
    evicted_before = closed_count("pending_per_source_limit")
    with attackers(service.port, 50):
        wait_until(lambda: closed_count("pending_per_source_limit") > evicted_before, timeout=30)
        time.sleep(config.admission_timeout_s + 0.5)  # past the first deadline: every kind has been cut
        started = time.monotonic()
        result = storescu(service.port, files, timeout=60)
        assert result.returncode == 0, result.stderr
        assert time.monotonic() - started < NOT_HELD_UP_S
        assert service.server.doorman.pending() <= config.max_pending_per_source
    assert sum(instance_states(config).values()) == 5


def test_a_receiver_aborts_a_4gb_pdu_header_at_once_and_its_memory_stays_flat(two_receivers) -> None:
    _, service = two_receivers
    sock = hold_association(service.port)
    serving = [service.receivers.receivers[i].proc.pid for i, n in service.receivers.live().items() if n]
    before = rss_mb(serving[0])
    sock.sendall(bytes((0x04, 0)) + struct.pack(">L", 0xFFFFFFFF))
    assert send_stream(sock, 256 << 20) < 256 << 20
    assert rss_mb(serving[0]) - before < 64
    wait_until(lambda: service.gate.active() == 0, timeout=30)


def test_a_partial_pdata_in_a_receiver_is_closed_within_the_network_timeout(two_receivers) -> None:
    config, service = two_receivers
    sock = hold_association(service.port)
    sock.sendall(bytes((0x04, 0, 0, 0, 0)))
    started = time.monotonic()
    assert is_closed(sock, config.network_timeout_s + LATE_S + 3)
    assert time.monotonic() - started < config.network_timeout_s + LATE_S
    wait_until(lambda: service.gate.active() == 0, timeout=30)


def test_a_receiver_killed_alone_is_replaced_and_its_slots_are_freed(tmp_path: Path, two_receivers) -> None:
    config, service = two_receivers
    held = [hold_association(service.port) for _ in range(config.max_associations)]
    victim = service.receivers.receivers[0].proc.pid
    os.kill(victim, signal.SIGKILL)
    assert is_closed(held[0], 10) or is_closed(held[1], 10)  # its association died with it
    wait_until(lambda: service.gate.active() == 1, timeout=30)
    wait_until(lambda: service.receivers.ready() == 2, timeout=120)
    assert service.receivers.receivers[0].proc.pid != victim
    files = write_study(tmp_path / "in", [make_small_sc(study=Study(), number=i) for i in range(3)])
    assert storescu(service.port, files, timeout=30).returncode == 0
    assert sum(instance_states(config).values()) == 3


def test_a_hand_over_that_raises_frees_the_slot_and_refuses_the_caller(two_receivers, monkeypatch) -> None:
    """Whatever goes wrong between the gate's admission and a receiver taking the connection, the slot is
    freed, the caller refused (transient: it retries) and the close counted; before issue-12h only an OSError
    from the channel was: anything else left the slot taken until restart."""
    config, service = two_receivers
    pool, before = service.receivers, closed_count("hand_over_failed")
    for receiver in pool.receivers.values():
        send = receiver.channel.send

        def broken(message: tuple[Any, ...], fds: tuple[int, ...] = (), send: Any = send) -> None:
            if message[0] == "conn":
                raise RuntimeError("hand-over failed")  # anything but the OSError of a receiver that died
            send(message, fds)

        monkeypatch.setattr(receiver.channel, "send", broken)
    for _ in range(config.max_associations + 1):  # more than the slots: a leak would show as a limit RJ
        sock = connect(service.port)
        sock.sendall(associate_rq())
        assert read_pdu(sock)[:10] == bytes((0x03, 0, 0, 0, 0, 4, 0, 0x02, 0x03, 0x01))  # RJ: congestion
        sock.close()
        assert service.gate.active() == 0
    assert closed_count("hand_over_failed") == before + config.max_associations + 1
    assert sum(pool.live().values()) == 0  # no receiver counts a connection it never got
    monkeypatch.undo()
    held = [hold_association(service.port) for _ in range(config.max_associations)]  # every slot is free
    assert service.gate.active() == config.max_associations
    for sock in held:
        sock.close()
    wait_until(lambda: service.gate.active() == 0, timeout=30)


@pytest.mark.parametrize("caller", ["gone", "closed"])
def test_a_connection_whose_caller_is_gone_before_its_hand_over_leaves_no_slot_taken(
    two_receivers, caller: str
) -> None:
    """As test_lean_scp's caller gone before the A-ASSOCIATE-AC, across processes: the peer reset before the
    receiver's AC (the receiver reports the end), or the socket closed before it was passed (the channel
    refuses the descriptor; nothing reaches a receiver)."""
    _, service = two_receivers
    ours, peer = socket.socketpair()
    peer.close()
    if caller == "closed":
        ours.close()
    service.server._serve(ours, ("127.0.0.1", 0), associate_rq())
    wait_until(lambda: service.gate.active() == 0, timeout=30)
    assert sum(service.receivers.live().values()) == 0
    assert service.receivers.ready() == 2  # neither receiver ended over it


def test_a_receiver_that_cannot_be_restarted_at_once_still_frees_the_slots_of_the_next_to_die(
    tmp_path: Path, two_receivers, monkeypatch
) -> None:
    """A failed start (fork refused: EAGAIN) ended the thread that reaps receivers and frees their slots:
    the next receiver to die kept its associations' slots until restart. It is retried now."""
    from gateway.core import receivers

    config, service = two_receivers
    pool, failures = service.receivers, [OSError(errno.EAGAIN, "fork refused")]

    def popen(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return subprocess.Popen(*args, **kwargs)

    monkeypatch.setattr(
        receivers, "subprocess", SimpleNamespace(Popen=popen, TimeoutExpired=subprocess.TimeoutExpired)
    )
    held = [hold_association(service.port) for _ in range(config.max_associations)]  # one on each
    os.kill(pool.receivers[0].proc.pid, signal.SIGKILL)
    wait_until(lambda: not failures and service.gate.active() == 1, timeout=30)  # its restart was refused
    os.kill(pool.receivers[1].proc.pid, signal.SIGKILL)
    wait_until(lambda: service.gate.active() == 0, timeout=30)
    wait_until(lambda: pool.ready() == 2, timeout=120)  # both started again
    files = write_study(tmp_path / "in", [make_small_sc(study=Study(), number=i) for i in range(3)])
    assert storescu(config.port, files, timeout=60).returncode == 0
    for sock in held:
        sock.close()


def test_a_connection_handed_over_without_its_descriptor_is_reported_ended_and_the_receiver_goes_on() -> None:
    """At its open-file limit a receiver gets the message but not the descriptor (the kernel drops it:
    MSG_CTRUNC). It used to raise out of its loop and end, with every association it served; now it
    reports that connection ended (the main process frees the slot) and takes the next message."""
    from gateway.core.channel import Channel
    from gateway.core.receiver_process import Receiver

    main, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours = Channel(main)
    receiver = threading.Thread(target=Receiver(Channel(theirs), None).run, daemon=True)
    receiver.start()
    main.settimeout(30)
    ours.send(("conn", -7, ("127.0.0.1", 4242), associate_rq()))  # no descriptor with it
    assert ours.receive() == (("done", -7), [])
    ours.send(("metrics",))
    got = ours.receive()
    assert got is not None and got[0][0] == "metrics"  # still serving
    ours.send(("stop",))
    receiver.join(timeout=30)
    assert not receiver.is_alive()


def test_a_ledger_answer_that_cannot_reach_its_receiver_fails_that_store_and_no_other(
    two_receivers, monkeypatch
) -> None:
    """A receiver's association waits for the main process's answer to each row with its slot held. An answer
    that could not be sent (anything but the OSError of a dead receiver) ended the committer thread: that
    C-STORE and every later one, in every receiver, waited for ever. Now that one gets 0xA700."""
    from tests.gateway.test_lean_scp import c_store, store_rq_with_context

    _, service = two_receivers
    pool, ds = service.receivers, make_small_sc(side=32, number=1)
    commit = pool._commit
    monkeypatch.setattr(pool, "_commit", lambda batch: [(lambda: None, "")] * len(batch))  # unpicklable
    sock = connect(service.port)
    sock.sendall(store_rq_with_context(ds.SOPClassUID, "1.2.840.10008.1.2.1"))
    assert read_pdu(sock)[:1] == b"\x02"
    assert c_store(sock, ds.SOPClassUID, ds, 1) == 0xA700
    monkeypatch.setattr(pool, "_commit", commit)
    assert c_store(sock, ds.SOPClassUID, ds, 2) == 0x0000  # the committer is still there
    sock.close()
    wait_until(lambda: service.gate.active() == 0, timeout=30)


def test_a_dcmtk_study_through_two_receiver_processes_ends_forwarded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = gateway_config(tmp_path / "gw", receive_processes=2, workers=1)
    gw = GatewayProcess(config, {"name": "out", "path": str(out)}).start()
    try:
        held = hold_association(config.port)  # receiver 0 serves it: the study goes to receiver 1
        study = Study()
        first = write_study(tmp_path / "a", [make_small_sc(study=study, number=i) for i in range(4)])
        assert storescu(config.port, first).returncode == 0
        held.close()
        assert {e.get("receiver") for e in gw.events("instance.received")} == {1}
        second = write_study(tmp_path / "b", [make_small_sc(study=study, number=i) for i in range(4, 8)])
        assert storescu(config.port, second).returncode == 0
        wait_until(lambda: instance_states(config).get("forwarded") == 8, timeout=90)
        assert len(list(out.rglob("*.dcm"))) == 8
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{config.metrics_port}/metrics").read().decode()
        assert 'vera_gateway_received_total{outcome="stored"} 8.0' in metrics  # counted in the receivers
    finally:
        gw.stop()


def test_kill9_of_the_main_process_leaves_no_receiver_alive(tmp_path: Path) -> None:
    config = gateway_config(tmp_path / "gw", receive_processes=2, workers=1)
    assert_descendants_end_with_the_main_process(config, at_least=4)  # two receivers, forkserver, worker


def test_kill9_of_a_multi_process_gateway_loses_no_acknowledged_instance(tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = gateway_config(tmp_path / "gw", receive_processes=2, workers=1)
    gw = GatewayProcess(config, {"name": "out", "path": str(out)})
    study = Study()
    acked = write_study(tmp_path / "a", [make_small_sc(study=study, number=i) for i in range(4)])
    unacked = write_study(tmp_path / "b", [make_small_sc(study=study, number=i) for i in range(4, 7)])
    gw.start(hold="receive.after_spool=120")
    sender = threading.Thread(target=lambda: storescu(config.port, unacked))
    sender.start()
    wait_until(lambda: '"fault.hold"' in gw.log_text(), timeout=60)  # a receiver holds one spooled file
    gw.kill9()
    sender.join(timeout=60)
    gw.start()
    assert storescu(config.port, acked).returncode == 0
    gw.kill9()  # the acked instances are durable in the ledger before Success was sent
    with ledger_of(config) as ledger:
        assert len(ledger.instances()) == 4
    gw.start()
    assert storescu(config.port, unacked).returncode == 0  # the sender re-sends what was never acked
    wait_until(lambda: instance_states(config).get("forwarded") == 7, timeout=90)
    gw.stop()
    with ledger_of(config) as ledger:
        rows = ledger.instances()
    assert len(rows) == len({r.sop_key for r in rows}) == 7
    assert len(list(out.rglob("*.dcm"))) == 7


def test_two_processes_storing_the_same_bytes_never_see_a_half_written_file(tmp_path: Path) -> None:
    """One process writes slowly; a second storing the same bytes returns only once the file is complete."""
    data = os.urandom(1 << 20)

    def slow(fd: int, payload: bytes) -> None:
        os.write(fd, payload[: len(payload) // 2])
        time.sleep(1.0)
        os.write(fd, payload[len(payload) // 2 :])

    first = ContentStore(tmp_path / "spool", writer=slow, in_place=True, cross_process=True)
    pid = os.fork()
    if pid == 0:  # the first process: its writer holds the stripe for a second
        try:
            first.put(data)
        finally:
            os._exit(0)
    second = ContentStore(tmp_path / "spool", in_place=True, cross_process=True)
    created = wait_until(lambda: next((tmp_path / "spool").rglob("*.dcm"), None), timeout=30)
    inode = created.stat().st_ino
    stored = second.put(data)
    path = tmp_path / "spool" / stored.relpath
    # it waited for the first writer (whose second half comes a second after the first) and kept its
    # file, complete; was the parent held up past that second, this passes without proving the wait
    assert path.stat().st_ino == inode and path.read_bytes() == data
    assert os.waitpid(pid, 0)[1] == 0


@pytest.mark.parametrize("other", [{"receive_path": "pynetdicom"}, {"ledger": "postgresql://gw@db/vera"}])
def test_receiver_processes_are_refused_off_the_lean_path_and_on_cluster_nodes(other: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="receive_processes"):
        load_config(receive_processes=2, **other)
    assert load_config(receive_processes=2).receive_processes == 2


def test_merged_metrics_add_the_receivers_counters_to_the_main_process() -> None:
    from prometheus_client import generate_latest

    snap = [("vera_gateway_received", "counter", [("vera_gateway_received_total", {"outcome": "x"}, 3.0)])]
    text = generate_latest(MergedRegistry(lambda: [snap, snap])).decode()  # type: ignore[arg-type]
    assert 'vera_gateway_received_total{outcome="x"} 6.0' in text
