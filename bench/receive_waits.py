"""What the receive path's association threads wait on, per instance, over 1 and N parallel associations: the
gateway's service runs in this process (``workers: 0``, the scheduler polling as in ``serve``), DCMTK
``storescu -xy`` (TCP_NODELAY=1) sends the same sets as ``bench/ingest.py``, and each association thread's
wall time is split into

- ``CPU``           the thread's own CPU time (``time.thread_time``), wherever it was spent
- ``run queue``     runnable but not on a core (``/proc/self/task/<tid>/schedstat``): other processes' load
- ``recv``          blocked in ``PduReader._fill`` (waiting for the sender's next bytes, then for the GIL)
- ``ledger``        blocked in the intake's ledger call (the group commit where the checkout has one, else
                    ``record_received``): the write lock, a queued caller's wait for its batch, the GIL
                    between SQLite's steps (sqlite3 drops it around each), SQLite's I/O
- ``write+flush``   blocked in ``spool.write_in_place``: the fdatasync (then the GIL)
- ``GIL + other``   the rest of the thread's blocked time: waiting for the GIL between the steps above,
                    the response's send
- ``of which lock`` the part of ``ledger`` spent waiting for the ledger's process-wide write lock

(each timed step counts only its blocked time: its CPU and run-queue time are in those two columns)

so the point the associations queue on shows as the row that grows from 1 to N associations. Also per
instance: ``switches`` (the association threads' voluntary context switches: every wait for the GIL, a lock,
a read or a flush), ``process CPU`` (the whole service: association threads, scheduler, doorman) and
``rows per commit`` (the ledger's group commit, where the checkout has one). CPU and the
waits are per instance (all association threads together ÷ instances), which load on the machine moves far
less than the rates: ``run queue`` is where other tenants' load lands. It also prints who holds the ledger
write lock (association threads, the scheduler's grouping, others), per instance.

    PYTHONPATH=. .venv/bin/python bench/receive_waits.py [--photos 40] [--small 400] [--parallel 1 4]
        [--rounds 2] [--repo DIR]

``--repo DIR`` measures another checkout's gateway (e.g. a ``git worktree`` of main) with this script's
timers, interleaved round by round with this one: a paired before/after on a busy machine.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

Sums = dict[str, float]  # step → seconds, summed over threads
STEPS = ["wall", "CPU", "run queue", "recv", "ledger", "write+flush", "GIL + other", "of which lock"]


_SCHEDSTAT = threading.local()


def queued() -> float:
    """Seconds the calling thread has been runnable but waiting for a core (its schedstat, read through a
    descriptor kept open per thread: a few microseconds)."""
    fd = getattr(_SCHEDSTAT, "fd", None)
    if fd is None:
        fd = _SCHEDSTAT.fd = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
    return int(os.pread(fd, 128, 0).split()[1]) / 1e9


class Waits:
    """Seconds per step, summed over the association threads; lock holds by holder thread name."""

    def __init__(self) -> None:
        self.sums: Sums = defaultdict(float)
        self.holds: Sums = defaultdict(float)
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float, table: Sums | None = None) -> None:
        with self.lock:
            (self.sums if table is None else table)[name] += seconds

    def clear(self) -> None:
        with self.lock:
            self.sums.clear()
            self.holds.clear()


def timed(waits: Waits, owner: Any, attr: str, name: str) -> None:
    """Add the wall time of every call of ``owner.attr`` made on an association thread to ``name``."""
    original: Callable[..., Any] = getattr(owner, attr)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name != "association":
            return original(*args, **kwargs)
        started, runnable, cpu = time.perf_counter(), queued(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:  # CPU and the run queue have their own columns: this is the time blocked
            busy = (queued() - runnable) + (time.thread_time() - cpu)
            waits.add(name, time.perf_counter() - started - busy)

    setattr(owner, attr, wrapper)


class TimedLock:
    """Stands in for the ledger's write RLock: how long association threads wait for it, who holds it."""

    def __init__(self, inner: Any, waits: Waits) -> None:
        self.inner, self.waits = inner, waits
        self.local = threading.local()

    def __enter__(self) -> TimedLock:
        association = threading.current_thread().name == "association"
        started, cpu = time.perf_counter(), time.thread_time()
        runnable = queued() if association else 0.0
        self.inner.acquire()
        got = time.perf_counter()
        depth = getattr(self.local, "depth", 0)
        self.local.depth = depth + 1
        if depth == 0:
            self.local.got = got
            if association:
                blocked = got - started - (queued() - runnable) - (time.thread_time() - cpu)
                self.waits.add("of which lock", blocked)
        return self

    def __exit__(self, *exc: object) -> None:
        self.local.depth -= 1
        if self.local.depth == 0:
            holder = threading.current_thread().name
            kind = holder if holder in ("association", "scheduler") else "other"
            self.waits.add(kind, time.perf_counter() - self.local.got, self.waits.holds)
        self.inner.release()

    def acquire(self, *args: Any) -> bool:
        return bool(self.inner.acquire(*args))

    def release(self) -> None:
        self.inner.release()


def switches() -> int:
    """Voluntary context switches of the calling thread so far: each wait for the GIL, a lock, a read or a
    flush is one; their growth per instance from 1 to N associations is the threads handing the GIL round."""
    status = Path(f"/proc/self/task/{threading.get_native_id()}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:", 1)[1].split()[0])


def instrument(waits: Waits) -> None:
    """Wrap this process's gateway modules (the bench only; a served gateway is never patched)."""
    from gateway.core import lean_scp, spool
    from gateway.core.ledger import sqlite

    timed(waits, lean_scp.PduReader, "_fill", "recv")
    timed(waits, spool, "write_in_place", "write+flush")
    try:
        from gateway.core.ledger.group import GroupCommit

        timed(waits, GroupCommit, "record_received", "ledger")
    except ImportError:  # a checkout without the group commit: the intake calls the ledger itself
        timed(waits, sqlite.SqliteLedger, "record_received", "ledger")
    original_lock = sqlite._write_lock
    locks: dict[int, TimedLock] = {}

    def write_lock(path: Path) -> Any:
        inner = original_lock(path)
        return locks.setdefault(id(inner), TimedLock(inner, waits))

    sqlite._write_lock = write_lock
    serve = lean_scp.LeanAssociation.serve

    def serve_timed(self: Any) -> None:
        wall, cpu, runnable, switched = time.perf_counter(), time.thread_time(), queued(), switches()
        try:
            serve(self)
        finally:
            waits.add("switches", (switches() - switched) / 1000)  # per_instance() scales by 1000
            waits.add("run queue", queued() - runnable)
            waits.add("wall", time.perf_counter() - wall)
            waits.add("CPU", time.thread_time() - cpu)
            os.close(_SCHEDSTAT.__dict__.pop("fd"))

    lean_scp.LeanAssociation.serve = serve_timed  # type: ignore[method-assign]


@contextmanager
def service(work: Path) -> Iterator[Any]:
    from dicom_rules import FolderDestination
    from gateway.core.service import Service
    from tests.gateway.conftest import gateway_config, rules_to

    root = Path(tempfile.mkdtemp(dir=work, prefix="waits-"))
    config = gateway_config(root / "gw", quiet_period_s=3600, max_wait_s=3600, workers=0, poll_interval_s=0.2)
    svc = Service(config, rules=rules_to(FolderDestination("out", root / "out"))).start()
    try:
        yield svc
    finally:
        svc.stop()


def measure(files: list[Path], parallel: int, work: Path, waits: Waits) -> tuple[float, Sums, Sums, float]:
    """One fresh gateway, one send: (seconds, waits summed over threads, lock holds by holder, ledger rows
    per commit)."""
    from bench.ingest import send

    with service(work) as svc:
        send(svc.port, "VERA_GW", files[:parallel], parallel)  # warm-up (duplicates: not in the sets)
        waits.clear()
        receipts = getattr(svc.intake, "receipts", None)  # the group commit, where the checkout has one
        before = (receipts.batches, receipts.rows) if receipts is not None else (0, 0)
        process_cpu = time.process_time()
        seconds = send(svc.port, "VERA_GW", files[parallel:], parallel)
        waits.add("process CPU", time.process_time() - process_cpu)
        sums, holds = dict(waits.sums), dict(waits.holds)
        batches, rows = (receipts.batches, receipts.rows) if receipts is not None else (0, 0)
        per_commit = (rows - before[1]) / max(1, batches - before[0]) if receipts is not None else 1.0
    return seconds, sums, holds, per_commit


def per_instance(sums: Sums, count: int) -> dict[str, float]:
    """ms per instance of each step; ``GIL + other`` is wall − CPU − run queue − the timed waits."""
    out = {k: 1000 * v / count for k, v in sums.items()}
    blocked = out.get("wall", 0) - sum(out.get(k, 0) for k in STEPS[1:6])  # "of which lock" is in "ledger"
    out["GIL + other"] = blocked
    return out


def run_one(args: argparse.Namespace) -> None:
    """The child: measure this process's checkout, print one JSON line per (set, parallel)."""
    import json

    import structlog

    from bench.ingest import make_sets

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # WARNING, as the bench
    waits = Waits()
    instrument(waits)
    with tempfile.TemporaryDirectory(prefix="bench-waits-") as tmp:
        work = Path(tmp)
        sets = make_sets(work / "in", args.photos, args.small)
        for set_name, files in sets.items():
            for parallel in args.parallel:
                if len(files) <= parallel:
                    continue
                seconds, sums, holds, per_commit = measure(files, parallel, work, waits)
                count = len(files) - parallel
                row = {"set": set_name, "parallel": parallel, "rate": count / seconds}
                row.update(per_instance(sums, count))
                row.update({f"held by {k}": 1000 * v / count for k, v in holds.items()})
                row["rows per commit"] = per_commit
                print(json.dumps(row), flush=True)


def child(repo: Path, args: argparse.Namespace) -> list[dict[str, float]]:
    """Run the measurement with ``repo``'s gateway first on the path (a fresh interpreter per round)."""
    import json

    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--photos", str(args.photos)]
    cmd += ["--small", str(args.small), "--parallel", *map(str, args.parallel)]
    env = {**os.environ, "PYTHONPATH": f"{repo}{os.pathsep}{REPO}"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=repo).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def report(rows: dict[str, list[dict[str, float]]]) -> None:
    keys = ["rate", *STEPS, "held by association", "held by scheduler", "held by other", "rows per commit"]
    keys += ["switches", "process CPU"]
    for label, found in rows.items():
        print(f"\n{label}: ms per instance (association threads summed), median of rounds")
        print(f"{'set/assocs':<14}" + "".join(f"{k.replace('held by ', 'held:'):>13}" for k in keys))
        groups: dict[tuple[str, int], list[dict[str, float]]] = defaultdict(list)
        for row in found:
            groups[(str(row["set"]), int(row["parallel"]))].append(row)
        for (set_name, parallel), group in groups.items():
            cells = [statistics.median(r.get(k, 0.0) for r in group) for k in keys]
            print(f"{set_name + '/' + str(parallel):<14}" + "".join(f"{c:>13.3f}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--small", type=int, default=400)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repo", type=Path, default=None, help="another checkout, measured in turn")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.path[:0] = [os.getcwd()]
        importlib.invalidate_caches()
        run_one(args)
        return
    checkouts = {"this checkout": REPO}
    if args.repo is not None:
        checkouts[f"{args.repo.resolve().name}"] = args.repo.resolve()
    rows: dict[str, list[dict[str, float]]] = {label: [] for label in checkouts}
    for _ in range(args.rounds):
        for label, repo in checkouts.items():
            rows[label].extend(child(repo, args))
    report(rows)
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
