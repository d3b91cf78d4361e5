"""Forwarder: back-off, breaker, give-up → quarantine → replay (CLI), a destination down then up."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pynetdicom.dsutils import split_dataset

from anonymizer.plans import PixelMode
from dicom_rules import DicomDestination, FolderDestination
from gateway.cli import main as cli_main
from gateway.core.config import ForwardSettings
from gateway.core.destinations import OutboundFile
from gateway.core.destinations.dicom import open_association
from gateway.core.forwarder import Breaker, Forwarder, backoff_delay
from gateway.core.ledger import (
    Deidentified,
    InstanceState,
    JobState,
    Ledger,
    ReceivedInstance,
    SqliteLedger,
    open_ledger,
)
from gateway.core.ledger.sql import Tx
from tests.conftest import Study, make_small_sc, write_study
from tests.gateway.conftest import gateway_config, instance_states, ledger_of, rules_to, storescu, wait_until
from tests.ops.peers import dcmtk_storescp, free_port


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    settings = ForwardSettings(backoff_initial_s=1, backoff_max_s=60, jitter=0.2)
    rng = random.Random(7)
    delays = [backoff_delay(n, settings, rng) for n in range(10)]
    for n, delay in enumerate(delays):
        base = min(60, 2**n)
        assert 0.8 * base <= delay <= 1.2 * base
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_breaker_opens_after_consecutive_failures_and_half_opens_later() -> None:
    breaker = Breaker(threshold=3, reset_s=10)
    for t in range(3):
        assert breaker.allows(float(t))
        breaker.record(False, float(t))
    assert breaker.is_open and not breaker.allows(5.0) and breaker.allows(12.0)
    breaker.record(True, 12.0)
    assert not breaker.is_open and breaker.failures == 0


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


@pytest.mark.integration
def test_destination_down_then_up_everything_arrives_with_retries_counted(
    tmp_path: Path, gateway: Any, orthanc: Any
) -> None:
    research = orthanc(aet="RESEARCH", start=False)  # ports allocated, not listening yet
    config = gateway_config(
        tmp_path / "gw",
        forward={
            "backoff_initial_s": 0.2,
            "backoff_max_s": 0.5,
            "breaker_failures": 2,
            "breaker_reset_s": 0.5,
        },
    )
    destination = DicomDestination("research", "RESEARCH", "127.0.0.1", research.dicom_port)
    service = gateway(config, rules=rules_to(destination, PixelMode.BLANK))
    failures_before = metric(service.metrics_port, "vera_gateway_forward_failures_total")
    study = Study()
    files = write_study(tmp_path / "in", [make_small_sc(study=study, number=n) for n in range(6)])
    assert storescu(service.port, files).returncode == 0
    wait_until(lambda: instance_states(config).get("retry_waiting") == 6, timeout=60)
    wait_until(
        lambda: metric(service.metrics_port, "vera_gateway_forward_failures_total") >= failures_before + 12
    )
    research.start()
    wait_until(lambda: instance_states(config) == {"forwarded": 6}, timeout=60)
    assert len(research.wait_for_instances(6)) == 6
    with ledger_of(config) as ledger:
        assert all(r.attempts >= 2 for r in ledger.instances())
    health = urllib.request.urlopen(f"http://127.0.0.1:{service.metrics_port}/healthz", timeout=10).read()
    assert b'"ok": true' in health


@pytest.mark.integration
def test_give_up_quarantines_and_cli_replay_forwards(tmp_path: Path, gateway: Any, capsys: Any) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the folder destination should be")
    config = gateway_config(
        tmp_path / "gw", forward={"backoff_initial_s": 0.1, "backoff_max_s": 0.2, "give_up_s": 0.5}
    )
    service = gateway(config, rules=rules_to(FolderDestination("folder", blocked / "sub"), PixelMode.BLANK))
    files = write_study(tmp_path / "in", [make_small_sc()])
    assert storescu(service.port, files).returncode == 0
    wait_until(lambda: instance_states(config) == {"quarantined": 1}, timeout=60)
    with ledger_of(config) as ledger:
        (item,) = ledger.quarantine_items()
    assert item.kind == "forward" and item.reason.startswith("forward-gave-up:folder-write")
    data = ["--data-dir", str(config.data_dir)]
    assert cli_main(["quarantine", "list", *data]) == 0
    assert "forward-gave-up" in capsys.readouterr().out
    assert cli_main(["quarantine", "show", str(item.id), *data]) == 0
    shown = capsys.readouterr().out
    assert "instance.state" in shown and "quarantined" in shown and "folder-write" in shown
    blocked.unlink()
    assert cli_main(["quarantine", "replay", str(item.id), *data]) == 0
    wait_until(lambda: instance_states(config) == {"forwarded": 1}, timeout=60)
    assert len(list((blocked / "sub").glob("2.25.*.dcm"))) == 1
    assert cli_main(["status", *data]) == 0
    assert "forwarded" in capsys.readouterr().out


@pytest.mark.integration
def test_retention_deletes_files_of_forwarded_instances_only(tmp_path: Path, gateway: Any) -> None:
    config = gateway_config(tmp_path / "gw", workers=1)
    service = gateway(config, rules=rules_to(FolderDestination("folder", tmp_path / "out"), PixelMode.BLANK))
    assert storescu(service.port, write_study(tmp_path / "in", [make_small_sc()])).returncode == 0
    wait_until(lambda: instance_states(config) == {"forwarded": 1}, timeout=60)
    assert (
        len(list(config.spool_dir.glob("*/*.dcm"))) == 1 and len(list(config.outbox_dir.glob("*/*.dcm"))) == 1
    )
    assert service.purge(before=time.time() + 1) == 1
    assert not list(config.spool_dir.glob("*/*.dcm")) and not list(config.outbox_dir.glob("*/*.dcm"))
    assert len(list((tmp_path / "out").glob("*.dcm"))) == 1 and service.purge(before=time.time() + 1) == 0


def deidentified_outputs(ledger: Ledger, out_paths: list[str], destination: str = "pacs") -> list[int]:
    """Instances (one study) recorded as de-identified into ``out_paths`` (relative to the outbox)."""
    ids = []
    for n in range(len(out_paths)):
        received = ReceivedInstance(
            f"s{n}", "st", "P", "1.2", "1.2.840.10008.1.2.1", f"h{n}", "x", 1, "A", "ip"
        )
        ids.append(ledger.record_received(received).instance_id)
    ledger.group_received()
    (job,) = ledger.ready_jobs(0, 600)
    run = ledger.start_job(job)
    assert run is not None
    outcomes = [Deidentified(i, destination, p, f"2.25.{i}") for i, p in zip(ids, out_paths, strict=True)]
    ledger.finish_job(run, outcomes)
    return ids


def test_unreadable_outbox_file_fails_alone_and_never_stalls_the_destination(tmp_path: Path) -> None:
    config = gateway_config(tmp_path / "gw", forward={"connect_timeout_s": 2.0})
    ledger = open_ledger(config)
    good = write_study(config.outbox_dir / "ok", [make_small_sc()])[0]
    deidentified_outputs(ledger, ["missing/gone.dcm", str(good.relative_to(config.outbox_dir))])
    rules = rules_to(DicomDestination("pacs", "NOBODY", "127.0.0.1", free_port()))
    assert Forwarder(config, ledger, lambda: rules).tick() == 0  # raised FileNotFoundError before
    rows = ledger.instances()
    assert [r.state for r in rows] == [InstanceState.RETRY_WAITING] * 2
    assert rows[0].reason == "outbox-unreadable:FileNotFoundError"
    assert not rows[1].reason.startswith("outbox-unreadable")


class CountingLedger(SqliteLedger):
    """The real SQLite ledger, counting its write transactions."""

    writes = 0

    def _write(self) -> AbstractContextManager[Tx]:
        self.writes += 1
        return super()._write()


def dataset_bytes(path: Path) -> bytes:
    """The encoded dataset of a DICOM file, without preamble and file meta (read, never decoded)."""
    _, offset = split_dataset(path)
    return path.read_bytes()[offset:]


@pytest.mark.integration
def test_a_tick_sends_the_stored_bytes_undecoded_and_records_all_outcomes_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = gateway_config(tmp_path / "gw", forward={"batch_size": 2, "connect_timeout_s": 5.0})
    ledger = CountingLedger(config.ledger_path)
    outputs = write_study(config.outbox_dir / "ok", [make_small_sc(number=n) for n in range(5)])
    out_paths = [str(p.relative_to(config.outbox_dir)) for p in outputs] + ["missing/gone.dcm"]
    deidentified_outputs(ledger, out_paths)  # 6 outputs: three batches of two

    def no_decoding(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the forwarder decoded an output")

    monkeypatch.setattr(pydicom.filereader, "read_partial", no_decoding)  # what every dcmread calls
    port = free_port()
    rules = rules_to(DicomDestination("pacs", "ANY", "127.0.0.1", port))
    with dcmtk_storescp(port, tmp_path / "peer", ["+B"]):  # +B: the peer stores the bytes as received
        ledger.writes = 0
        sent = Forwarder(config, ledger, lambda: rules).tick()
        assert (sent, ledger.writes) == (5, 1)  # one transaction per tick (six before: one per instance)
    states = [r.state for r in ledger.instances()]
    assert states == [InstanceState.FORWARDED] * 5 + [InstanceState.RETRY_WAITING]
    assert [j.state for j in ledger.jobs()] == [JobState.DEIDENTIFIED]  # the missing one will be retried
    received = sorted(dataset_bytes(p) for p in (tmp_path / "peer").iterdir())
    assert received == sorted(dataset_bytes(p) for p in outputs)  # byte for byte what the outbox holds


@pytest.mark.integration
def test_a_reactor_poll_during_a_send_never_takes_the_response(tmp_path: Path) -> None:
    """pynetdicom's reactor may poll the DIMSE queue while ``send_c_store`` waits (its pause handshake races):
    a response it took was lost, the sender hit the DIMSE timeout and aborted a store the peer had made (the
    tick test above failed so on a loaded machine). Here a thread polls as a late-paused reactor does."""
    files = write_study(tmp_path / "in", [make_small_sc(number=n) for n in range(5)])
    meta = pydicom.filereader.read_file_meta_info(files[0])
    contexts = [(str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))]
    config = gateway_config(tmp_path / "gw", forward={"dimse_timeout_s": 3.0})
    port = free_port()
    with dcmtk_storescp(port, tmp_path / "peer"):
        assoc = open_association(DicomDestination("pacs", "ANY", "127.0.0.1", port), config, contexts)
        assert assoc.is_established
        polling = threading.Event()

        def poll_like_the_reactor() -> None:
            while polling.is_set():
                assoc.dimse.get_msg(block=False)
                time.sleep(0)  # hand the GIL on, as the reactor's own sleep does

        polling.set()
        poller = threading.Thread(target=poll_like_the_reactor, daemon=True)
        poller.start()
        try:
            statuses = [assoc.send_c_store(f) if assoc.is_established else None for f in files]
        finally:
            polling.clear()
            poller.join()
            if assoc.is_established:
                assoc.release()
    assert [s.get("Status") if s else None for s in statuses] == [0x0000] * 5
    assert len(list((tmp_path / "peer").iterdir())) == 5


@pytest.mark.integration
def test_a_late_response_is_never_taken_as_the_next_instances_answer(tmp_path: Path) -> None:
    """A peer that answers the first C-STORE after the DIMSE timeout: that store fails, the association is
    aborted, and the second file is not counted as stored on the first one's late Success."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import SecondaryCaptureImageStorage  # type: ignore[attr-defined]

    from gateway.core.destinations.dicom import DicomSender

    answered: list[str] = []

    def slow_first(event: Any) -> int:
        if not answered:
            time.sleep(2.0)  # past the sender's 1 s DIMSE timeout
        answered.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="SLOW")
    ae.add_supported_context(SecondaryCaptureImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    port = free_port()
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, slow_first)])
    try:
        files = write_study(tmp_path / "in", [make_small_sc(number=n) for n in range(2)])
        config = gateway_config(tmp_path / "gw", forward={"dimse_timeout_s": 1.0, "connect_timeout_s": 5.0})
        sender = DicomSender(DicomDestination("slow", "SLOW", "127.0.0.1", port), config)
        results = sender.send([OutboundFile(n, f, f"2.25.{n}") for n, f in enumerate(files)])
    finally:
        server.shutdown()
    assert [(r.ok, r.reason) for r in results] == [(False, "no-response"), (False, "association-lost")]


def test_folder_destination_refuses_a_uid_that_is_not_a_file_name(tmp_path: Path) -> None:
    from gateway.core.destinations.folder import FolderSender

    source = write_study(tmp_path / "outbox", [make_small_sc()])[0]
    sender = FolderSender(FolderDestination("f", tmp_path / "dest"), gateway_config(tmp_path / "gw"))
    results = sender.send([OutboundFile(1, source, "../escaped"), OutboundFile(2, source, "2.25.42")])
    assert [(r.ok, r.reason) for r in results] == [(False, "folder-unsafe-uid"), (True, "")]
    assert not (tmp_path / "escaped.dcm").exists()  # written outside the folder before
    assert (tmp_path / "dest" / "2.25.42.dcm").exists()
