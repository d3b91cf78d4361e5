"""Where the gateway's receive time goes, per instance: the gateway's SCP runs in this process with timers
wrapped around each step of the receive path, DCMTK ``storescu -xy`` (TCP_NODELAY=1) sends the same sets as
``bench/ingest.py`` over one association, and the table gives milliseconds per instance for each step next to
the wall time per instance seen by the sender.

``--receive-path pynetdicom`` (default) times the steps below on pynetdicom's path. ``--receive-path lean``
times the default path (gateway/core/lean_scp.py), where everything runs on one thread per association: it
prints the intake's steps (the same timers) and the CPU time (``time.thread_time``) of the association thread
and of the intake within it, so "association thread − intake" is the network side (reads, PDU framing, command
set, response).

    .venv/bin/python bench/receive_split.py [--photos 20] [--small 200] [--rounds 2]

Steps (each timed where it runs; "thread" is the thread it runs on):

- ``socket read``      GuardedSocket.recv: bytes from the kernel, PDU bounds (DUL thread; includes waiting for
                       bytes still in flight, so a slow sender shows here)
- ``PDU decode``       pynetdicom's P-DATA-TF decode (DUL thread)
- ``DIMSE assembly``   pynetdicom's DIMSE message assembly and command decode (DUL thread)
- ``hand-off in``      message complete → service handler starts (DUL thread → association thread)
- ``handler``          the C-STORE handler as a whole, split into: Part 10 header, parse + checks, sha256,
                       write + fdatasync, ledger commit, and the rest (log line, metrics)
- ``hand-off out``     handler returns → response PDU written to the socket (response encode, queue, thread
                       switch back to the DUL thread)

The timers cost a few microseconds each; what no timer covers (the sender, the kernel, the GIL held by another
thread) is the difference between the wall time and the sum of the steps on the path.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import make_sets, send  # noqa: E402

Samples = dict[str, list[float]]


class Timers:
    """Seconds per step, collected from any thread."""

    def __init__(self) -> None:
        self.samples: Samples = defaultdict(list)
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.samples[name].append(seconds)

    def wrap(self, owner: Any, attr: str, name: str) -> None:
        """Time every call of ``owner.attr`` (a class or module attribute) under ``name``."""
        original: Callable[..., Any] = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        setattr(owner, attr, timed)

    def clear(self) -> None:
        with self._lock:
            self.samples.clear()


def instrument(timers: Timers) -> None:
    """Wrap the receive path's steps (this process only; the bench's own gateway is never patched)."""
    from pynetdicom import dimse, dul, transport

    from gateway.core import intake, pdu_guard, scp, spool
    from gateway.core.ledger import sql

    timers.wrap(pdu_guard.GuardedSocket, "recv", "socket read")
    timers.wrap(dul.DULServiceProvider, "_decode_pdu", "PDU decode")
    timers.wrap(dimse.DIMSEServiceProvider, "receive_primitive", "DIMSE assembly")
    timers.wrap(scp, "handle_store", "handler")
    timers.wrap(scp, "encoded_file", "  Part 10 header")
    timers.wrap(intake, "parse_header", "  parse + checks")
    timers.wrap(spool, "sha256_hex", "  sha256")
    timers.wrap(spool, "write_in_place", "  write + fdatasync")
    timers.wrap(sql.SqlLedger, "record_received", "  ledger commit")
    _stamp_hand_offs(timers, transport.AssociationSocket)


def _stamp_hand_offs(timers: Timers, socket_class: Any) -> None:
    """hand-off in: message queued/complete → handler start; hand-off out: handler end → response sent."""
    from pynetdicom import dimse

    from gateway.core import scp

    marks: dict[str, float] = {}
    complete = dimse.DIMSEMessage.message_to_primitive
    handler = scp.handle_store
    send_pdu = socket_class.send

    def message_done(self: Any) -> Any:
        marks["complete"] = time.perf_counter()
        return complete(self)

    def handle(event: Any, *args: Any) -> int:
        started = time.perf_counter()
        timers.add("hand-off in", started - marks.pop("complete", started))
        try:
            return handler(event, *args)
        finally:
            marks["answered"] = time.perf_counter()

    def sent(self: Any, data: bytes) -> None:
        send_pdu(self, data)
        answered = marks.pop("answered", None)
        if answered is not None:
            timers.add("hand-off out", time.perf_counter() - answered)

    dimse.DIMSEMessage.message_to_primitive = message_done  # type: ignore[method-assign]
    scp.handle_store = handle
    socket_class.send = sent


def instrument_lean(timers: Timers) -> None:
    """The intake's steps as above, and the thread CPU of each association and of its intake calls."""
    from gateway.core import intake, lean_scp, spool
    from gateway.core.ledger import sql

    timers.wrap(intake, "parse_header", "  parse + checks")
    timers.wrap(spool, "write_in_place", "  write + fdatasync")
    timers.wrap(sql.SqlLedger, "record_received", "  ledger commit")
    _thread_cpu(timers, lean_scp.LeanAssociation, "serve", "association thread CPU")
    _thread_cpu(timers, intake.Intake, "receive", "  of which intake CPU")


def _thread_cpu(timers: Timers, owner: Any, attr: str, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, attr)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            timers.add(name, time.thread_time() - started)

    setattr(owner, attr, timed)


def measure(
    files: list[Path], timers: Timers, work: Path, rounds: int, receive_path: str
) -> tuple[float, Samples]:
    """Median wall ms per instance over ``rounds`` fresh gateways, and the step samples of all rounds."""
    from dicom_rules import FolderDestination
    from gateway.core.service import Service
    from tests.gateway.conftest import gateway_config, rules_to

    walls: list[float] = []
    samples: Samples = defaultdict(list)
    for rnd in range(rounds):
        root = Path(tempfile.mkdtemp(dir=work, prefix=f"split-{rnd}-"))
        config = gateway_config(
            root / "gw", quiet_period_s=3600, max_wait_s=3600, workers=0, receive_path=receive_path
        )
        service = Service(config, rules=rules_to(FolderDestination("out", root / "out"))).start()
        try:
            send(service.port, "VERA_GW", files[:2])  # warm-up: imports, first-association costs
            timers.clear()
            seconds = send(service.port, "VERA_GW", files[2:])
        finally:
            service.stop()
        walls.append(1000 * seconds / (len(files) - 2))
        for name, values in timers.samples.items():
            samples[name].extend(values)
    return statistics.median(walls), samples


def report(set_name: str, count: int, rounds: int, wall_ms: float, samples: Samples) -> None:
    instances = (count - 2) * rounds
    print(f"\n{set_name}: {count - 2} instances x {rounds} rounds, wall {wall_ms:.2f} ms/instance")
    print(f"{'step':<42}{'ms/instance':>12}{'calls/inst':>11}")
    for name, values in sorted(samples.items(), key=lambda item: item[0].startswith("  of which")):
        calls = len(values) / instances if name != "association thread CPU" else 1.0  # one per association
        print(f"{name:<42}{1000 * sum(values) / instances:>12.3f}{calls:>11.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--receive-path", choices=["pynetdicom", "lean"], default="pynetdicom")
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # WARNING, as the bench
    timers = Timers()
    (instrument_lean if args.receive_path == "lean" else instrument)(timers)
    with tempfile.TemporaryDirectory(prefix="bench-split-") as tmp:
        work = Path(tmp)
        sets = make_sets(work / "in", args.photos, args.small)
        for set_name, files in sets.items():
            if len(files) > 2:
                wall, samples = measure(files, timers, work, args.rounds, args.receive_path)
                report(set_name, len(files), args.rounds, wall, samples)
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
