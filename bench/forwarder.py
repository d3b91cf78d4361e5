"""Forwarder: all outcomes of a tick in one ledger transaction, and outputs sent as stored (never decoded).

    .venv/bin/python bench/forwarder.py [--outputs 300] [--batch 50] [--side 2048]

Part 1 (commits): ``--outputs`` small outputs forwarded to a DCMTK storescp on loopback, tick after tick,
by this forwarder against a peer run whose ledger commits each instance on its own (``record_forwarding``
called once per outcome: the forwarder before issue 9). Both use the real SQLite ledger (synchronous=FULL:
one fsync per commit). Prints write transactions and wall time side by side, and the ratio.
Part 2 (decoding): one large output (``--side``² RGB, uncompressed) sent by the DICOM sender as stored
(pynetdicom's chunked send of the file) against the decoding path (the file read by dcmread, then
encoded again; the forwarder before issue 9). Prints peak Python memory (tracemalloc) and time per send.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pynetdicom import _config  # noqa: E402

from dicom_rules import DicomDestination  # noqa: E402
from gateway.core.destinations import OutboundFile  # noqa: E402
from gateway.core.destinations.dicom import DicomSender  # noqa: E402
from gateway.core.forwarder import Forwarder  # noqa: E402
from gateway.core.ledger import (  # noqa: E402
    Deidentified,
    ForwardOutcome,
    ForwardRecorded,
    ReceivedInstance,
    SqliteLedger,
)
from gateway.core.ledger.sql import Tx  # noqa: E402
from gateway.ops.logs import configure_logging  # noqa: E402
from tests.conftest import make_small_sc, write_study  # noqa: E402
from tests.gateway.conftest import gateway_config, rules_to  # noqa: E402
from tests.ops.peers import dcmtk_storescp, free_port  # noqa: E402


class CountingLedger(SqliteLedger):
    writes = 0

    def _write(self) -> AbstractContextManager[Tx]:
        self.writes += 1
        return super()._write()


class PerInstanceLedger(CountingLedger):
    """The peer: each forward outcome committed on its own."""

    def record_forwarding(self, outcomes: Sequence[ForwardOutcome]) -> list[ForwardRecorded]:
        recorded: list[ForwardRecorded] = []
        for outcome in outcomes:
            recorded += super().record_forwarding([outcome])
        return recorded


def _deidentified(ledger: SqliteLedger, outbox: Path, outputs: list[Path]) -> None:
    ids = []
    for n, _ in enumerate(outputs):
        received = ReceivedInstance(
            f"s{n}", "st", "P", "1.2", "1.2.840.10008.1.2.1", f"h{n}", "x", 1, "A", ""
        )
        ids.append(ledger.record_received(received).instance_id)
    ledger.group_received()
    (job,) = ledger.ready_jobs(0, 600)
    run = ledger.start_job(job)
    assert run is not None
    done = [
        Deidentified(i, "pacs", str(p.relative_to(outbox)), f"2.25.{i}")
        for i, p in zip(ids, outputs, strict=True)
    ]
    ledger.finish_job(run, done)


def forward_all(
    work: Path, make: Callable[[Path], CountingLedger], count: int, batch: int
) -> tuple[int, float]:
    """Forward ``count`` outputs to a fresh storescp; returns (write transactions, seconds)."""
    config = gateway_config(work / "gw", forward={"batch_size": batch, "connect_timeout_s": 5.0})
    outputs = write_study(config.outbox_dir / "o", [make_small_sc(number=n, side=64) for n in range(count)])
    ledger = make(config.ledger_path)
    _deidentified(ledger, config.outbox_dir, outputs)
    port = free_port()
    rules = rules_to(DicomDestination("pacs", "ANY", "127.0.0.1", port))
    with dcmtk_storescp(port, work / "peer"):
        forwarder = Forwarder(config, ledger, lambda: rules)
        ledger.writes, sent = 0, 0
        started = time.perf_counter()
        while sent < count:
            forwarded = forwarder.tick()
            if not forwarded:
                raise RuntimeError("a tick forwarded nothing")
            sent += forwarded
        return ledger.writes, time.perf_counter() - started


def send_large(work: Path, side: int, chunked: bool) -> tuple[float, float]:
    """Send one ``side``² RGB output; returns (peak traced MiB, seconds of an untraced send)."""
    config = gateway_config(work / "gw", forward={"connect_timeout_s": 5.0})
    (path,) = write_study(work / "big", [make_small_sc(side=side)])
    port = free_port()
    with dcmtk_storescp(port, work / "peer"):
        sender = DicomSender(DicomDestination("pacs", "ANY", "127.0.0.1", port), config)
        _config.STORE_SEND_CHUNKED_DATASET = chunked  # False: pynetdicom decodes the file (dcmread) first
        files = [OutboundFile(1, path, "2.25.1")]
        started = time.perf_counter()
        assert sender.send(files)[0].ok
        seconds = time.perf_counter() - started
        tracemalloc.start()
        assert sender.send(files)[0].ok
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return peak, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", type=int, default=300)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--side", type=int, default=2048)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours = forward_all(work / "ours", CountingLedger, args.outputs, args.batch)
        peer = forward_all(work / "peer", PerInstanceLedger, args.outputs, args.batch)
        print(f"forward {args.outputs} outputs, batch {args.batch} (4 batches per tick):")
        print(f"  one transaction per tick:     {ours[0]:5d} write transactions  {ours[1]:7.2f} s")
        print(f"  one transaction per instance: {peer[0]:5d} write transactions  {peer[1]:7.2f} s")
        ratios = f"transactions {peer[0] / ours[0]:.1f}x, time {peer[1] / ours[1]:.2f}x"
        print(f"  ratio (per instance / per tick): {ratios}")
        stored = send_large(work / "stored", args.side, chunked=True)
        decoded = send_large(work / "decoded", args.side, chunked=False)
        mib = args.side * args.side * 3 / 2**20
        print(f"send one {args.side}x{args.side} RGB output ({mib:.0f} MiB of pixel data):")
        print(f"  as stored (chunked, undecoded): peak {stored[0]:7.1f} MiB  {stored[1]:6.2f} s")
        print(f"  decoded (dcmread, re-encoded):  peak {decoded[0]:7.1f} MiB  {decoded[1]:6.2f} s")
        ratios = f"memory {decoded[0] / max(stored[0], 0.01):.0f}x, time {decoded[1] / stored[1]:.2f}x"
        print(f"  ratio (decoded / stored): {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
