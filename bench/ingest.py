"""Ingest throughput, side by side in one run: the same files sent by DCMTK ``storescu -xy`` (loopback,
TCP_NODELAY=1) over 1 and over N parallel associations into

- ``gateway``   ``vera-gateway serve`` (admission, parse, spool with fsync, ledger commit, only then Success)
- ``storescp``  DCMTK storescp (bit-preserving writes, no fsync)
- ``orthanc``   Orthanc with a plain config (SQLite index; it syncs its storage area by default)
- ``pynetdicom`` pynetdicom's own storescp app (writes files, no fsync): the library the gateway builds on

    .venv/bin/python bench/ingest.py [--photos 20] [--small 200] [--rounds 3] [--parallel 1 4]

Every round starts a fresh receiver of each kind (no duplicate short-cuts) and runs the peers one after the
other, so a machine that gets busier mid-run slows them all alike; each round starts with the next receiver
(rotation), and the disk is synced after each receiver's files are removed, so no receiver pays for the
write-back of the one before it (storescp and pynetdicom do not fsync; every receiver's files are deleted);
the table gives the median of the rounds and the ratios against Orthanc and storescp. The load average is
printed with it: on a shared machine, read the ratios, not the absolute numbers. Sets: London Set photos
wrapped as JPEG Baseline VL Photographic (no re-encoding, ~0.1-1 MB) and ~4 kB uncompressed Secondary
Capture objects.

Four associations against one: each storescu process costs ~50-70 ms before and after its files (start,
DCMTK's dictionary, 128 proposed contexts, release), and four starting at once 120-300 ms on two busy cores:
with ``--photos 20`` that is most of a four-association send. Read the "first to last stored file" rates, or
give each sender ~20 files or more (``--photos 78``).

Why an earlier version showed Orthanc at ~20 instances/s: Orthanc was started without ``TCP_NODELAY=1`` (the
DCMTK peers had it), so every C-STORE response waited out a 40 ms delayed ACK. ``tests.conftest.Orthanc``
now starts it with the same environment as storescu/storescp.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import (  # noqa: E402
    DCMTK_ENV,
    Orthanc,
    Study,
    face_photos,
    free_port,
    make_small_sc,
    make_vl_photo,
    write_study,
)

Target = tuple[int, str, int]  # port, called AE title, pid of the receiving process
Receiver = Callable[[Path], AbstractContextManager[Target]]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> set[int]:
    """``pid`` and its live descendants (the gateway's receiver processes with ``receive_processes`` > 1)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {pid}, {pid}
    while frontier:
        frontier = {p for p, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) the process and its live descendants have used so far, from
    /proc/<pid>/stat (their threads included)."""
    total = 0
    for one in descendants(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / CLOCK_TICKS


def write_bytes(pid: int) -> int:
    """Bytes the process and its live descendants have caused to be written to storage (/proc/<pid>/io)."""
    total = 0
    for one in descendants(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/io").read_text().splitlines():
                if line.startswith("write_bytes:"):
                    total += int(line.split()[1])
    return total


def machine_jiffies() -> tuple[int, int]:
    """(idle, total) clock ticks of all CPUs since boot (/proc/stat; idle counts iowait too)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return ticks[3] + ticks[4], sum(ticks[:8])


def senders_cpu_ms() -> float:
    """CPU time (user + system) of this process's reaped children: the storescu senders once waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (usage.ru_utime + usage.ru_stime) * 1000


@dataclass
class SendCost:
    """What one send cost, per instance: receiver and sender CPU, the receiver's disk writes, and how much
    of the machine's CPU (all cores, other users included) was left idle while it ran."""

    receiver_cpu_ms: float
    sender_cpu_ms: float
    write_mb_s: float
    idle_pct: float

    @staticmethod
    def measure(pid: int, action: Callable[[], float], count: int) -> tuple[float, SendCost]:
        cpu, sent, written, (idle, total) = cpu_ms(pid), senders_cpu_ms(), write_bytes(pid), machine_jiffies()
        seconds = action()
        idle2, total2 = machine_jiffies()
        cost = SendCost(
            (cpu_ms(pid) - cpu) / count,
            (senders_cpu_ms() - sent) / count,
            (write_bytes(pid) - written) / seconds / 1e6,
            100 * (idle2 - idle) / max(1, total2 - total),
        )
        return seconds, cost


def wait_echo(port: int, aec: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cmd = ["/usr/bin/echoscu", "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port)]
        if subprocess.run(cmd, capture_output=True, env=DCMTK_ENV).returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no C-ECHO answer from {aec} on {port}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def running(
    cmd: list[str], port: int, aec: str, env: dict[str, str] | None = None, cwd: Path = REPO
) -> Iterator[Target]:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd, env=env)
    try:
        wait_echo(port, aec)
        yield port, aec, proc.pid
    finally:
        stop(proc)


def gateway(root: Path, extra: tuple[str, ...] = (), repo: Path = REPO) -> AbstractContextManager[Target]:
    port = free_port()
    cmd = [sys.executable, "-m", "gateway.cli", *extra, "serve", "--data-dir", str(root), "--port", str(port)]
    cmd += ["--metrics-port", "0", "--quiet-period", "3600", "--workers", "0", "--log-level", "WARNING"]
    return running(cmd, port, "VERA_GW", {**os.environ, "PYTHONPATH": str(repo)}, cwd=repo)


def gateway_pynetdicom(root: Path) -> AbstractContextManager[Target]:
    """This checkout's gateway on the pynetdicom receive path (``receive_path: pynetdicom``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "gateway.yaml").write_text("receive_path: pynetdicom\n")
    return gateway(root, ("--config", str(root / "gateway.yaml")))


def gateway_processes(processes: int) -> Receiver:
    """This checkout's gateway with ``receive_processes: N`` (``--processes``)."""

    def start(root: Path) -> AbstractContextManager[Target]:
        root.mkdir(parents=True, exist_ok=True)
        (root / "gateway.yaml").write_text(f"receive_processes: {processes}\n")
        return gateway(root, ("--config", str(root / "gateway.yaml")))

    return start


def gateway_of(repo: Path) -> Receiver:
    """The gateway of another checkout (``--baseline``), measured in the same rounds as this one."""
    return lambda root: gateway(root, repo=repo)


@contextmanager
def gateway_console(root: Path) -> Iterator[Target]:
    """The gateway with ``console:`` on and a logged-in admin reloading the overview every second."""
    from gateway.console.users import write_user
    from gateway.ops.admin import Role

    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "gateway.yaml").write_text(f"console: {{port: {port}}}\n")
    write_user(root / "console-users.yaml", "bench", Role.ADMIN, "bench-password")
    done, ready = threading.Event(), threading.Event()

    def poll() -> None:
        base = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        for _ in range(100):  # the console starts after the DICOM listener that wait_echo saw
            try:
                page = opener.open(base + "/login", timeout=10).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        form = {"username": "bench", "password": "bench-password", "csrf_token": token}
        opener.open(base + "/login", data=urllib.parse.urlencode(form).encode(), timeout=10).read()
        ready.set()  # logged in (argon2 verify) before the send: the send sees the refreshes only
        while not done.wait(1.0):
            opener.open(base + "/", timeout=10).read()

    with gateway(root, ("--config", str(root / "gateway.yaml"))) as target:
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        ready.wait(30)
        try:
            yield target
        finally:
            done.set()
            poller.join(timeout=10)


def storescp(root: Path) -> AbstractContextManager[Target]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = ["/usr/bin/storescp", "+xa", "+B", "-aet", "STORESCP", "-od", str(root), str(port)]
    return running(cmd, port, "STORESCP", DCMTK_ENV)


def pynetdicom_app(root: Path) -> AbstractContextManager[Target]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pynetdicom", "storescp", "-q", "-aet", "PYNETDICOM", "-od", str(root)]
    return running([*cmd, str(port)], port, "PYNETDICOM")


@contextmanager
def orthanc(root: Path) -> Iterator[Target]:
    server = Orthanc(root, aet="ORTHANC").start()
    assert server.proc is not None
    try:
        yield server.dicom_port, "ORTHANC", server.proc.pid
    finally:
        server.stop(graceful=False)


RECEIVERS: dict[str, Receiver] = {
    "gateway": gateway,
    "orthanc": orthanc,
    "storescp": storescp,
    "pynetdicom": pynetdicom_app,
    "gateway+console": gateway_console,  # only with --console: right after the plain gateway
    "gateway-pynetdicom": gateway_pynetdicom,  # only when named in --receivers
}  # --baseline DIR adds "gateway@DIR" right after the plain gateway


def send(port: int, aec: str, files: list[Path], parallel: int = 1) -> float:
    """Send ``files`` over ``parallel`` simultaneous associations (files split round-robin); wall seconds."""
    chunks = [files[i::parallel] for i in range(parallel)]
    base = ["/usr/bin/storescu", "-xy", "-aet", "BENCH", "-aec", aec, "127.0.0.1", str(port)]
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*base, *map(str, chunk)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=DCMTK_ENV
        )
        for chunk in chunks
    ]
    errors = [p.communicate()[1] for p in procs]
    elapsed = time.perf_counter() - started
    if any(p.returncode != 0 for p in procs):
        raise RuntimeError(f"storescu to {aec} failed: {b''.join(errors)[-500:]!r}")
    return elapsed


def arrival_rate(root: Path, since: float, count: int) -> float:
    """Instances/s from the first to the last stored file of a send, by the files' modification times: the
    receiver's rate once the senders are running (their start-up and the association set-up and release
    fall outside). Counts files under ``root`` written since ``since``, not the index or ledger databases;
    nan unless there is one per instance (a coarse clock can put the first and last in one tick)."""
    index = ("index", "ledger", "orthanc.json", "gateway.yaml")
    times = [
        p.stat().st_mtime
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(index) and p.stat().st_mtime >= since
    ]
    if len(times) != count or max(times) <= min(times):
        return float("nan")
    return (count - 1) / (max(times) - min(times))


def fixed_cost(port: int, aec: str, probe: list[Path], repeats: int = 3) -> float:
    """Seconds of a send of one file per association (median of ``repeats``; the repeats are duplicates)."""
    return statistics.median(send(port, aec, probe, len(probe)) for _ in range(repeats))


def make_sets(root: Path, photos: int, small: int) -> dict[str, list[Path]]:
    study = Study()
    photo_ds = [make_vl_photo(p, study=study, number=n) for n, p in enumerate(face_photos(photos))]
    small_ds = [make_small_sc(study=study, number=n, side=32) for n in range(small)]
    return {
        "photos": write_study(root / "photos", photo_ds),
        "small-4kB": write_study(root / "small", small_ds),
    }


Results = dict[str, dict[str, list[float]]]  # "set/assocs" → receiver → instances/s per round
CPU_KEY = "cpu-ms/"  # results[CPU_KEY + "set/assocs"]: receiver → CPU ms per instance of its process
# results[prefix + "set/assocs"]: receiver → that SendCost field per round
# results[STEADY_KEY + "set/assocs"]: receiver → instances/s from its first to its last stored file (the
# senders' start-up, the association set-up and release left out: see arrival_rate); FIXED_KEY: ms of a send
# of one file per association (~50 ms for one storescu, 150-270 ms for four starting together on two busy
# cores, against ~300 ms for 200 small objects in all)
STEADY_KEY = "steady/"
FIXED_KEY = "fixed-ms/"
COST_KEYS = {
    STEADY_KEY: "",
    FIXED_KEY: "",
    CPU_KEY: "receiver_cpu_ms",
    "sender-cpu-ms/": "sender_cpu_ms",
    "write-MB/s/": "write_mb_s",
    "idle-%/": "idle_pct",
}


def rotated(names: list[str], rnd: int) -> list[str]:
    """Each round starts with the next receiver: none always runs right after the same one (a receiver that
    does not fsync leaves dirty pages that the next one's first fsyncs write back)."""
    start = rnd % len(names)
    return names[start:] + names[:start]


def run(args: argparse.Namespace) -> Results:
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-", dir=args.work_dir))
    results: Results = {}
    try:
        sets = make_sets(work / "in", args.photos, args.small)
        # one file per association, sent just before the timed send: the fixed cost of a send
        probes = make_sets(work / "probe", min(args.photos, max(args.parallel)), max(args.parallel))
        os.sync()
        for rnd in range(args.rounds):
            for set_name, files in sets.items():
                if not files:  # --photos 0 or --small 0: that set is skipped
                    continue
                for parallel in args.parallel:
                    key = f"{set_name}/{parallel}"
                    for name in rotated(args.receivers, rnd):
                        root = work / f"{name}-{set_name}-{parallel}-{rnd}"
                        with RECEIVERS[name](root) as (port, aec, pid):
                            start_up = fixed_cost(port, aec, probes[set_name][:parallel])
                            sending = lambda: send(port, aec, files, parallel)  # noqa: B023, E731
                            since = time.time()
                            seconds, cost = SendCost.measure(pid, sending, len(files))
                            steady = arrival_rate(root, since, len(files))
                        results.setdefault(key, {}).setdefault(name, []).append(len(files) / seconds)
                        results.setdefault(STEADY_KEY + key, {}).setdefault(name, []).append(steady)
                        results.setdefault(FIXED_KEY + key, {}).setdefault(name, []).append(1000 * start_up)
                        for prefix, field in list(COST_KEYS.items())[2:]:
                            value = getattr(cost, field)
                            results.setdefault(prefix + key, {}).setdefault(name, []).append(value)
                        shutil.rmtree(root, ignore_errors=True)
                        os.sync()  # the next receiver's fsyncs must not pay for this one's writes and deletes
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _rate_table(results: Results, prefix: str, names: list[str]) -> None:
    """Instances/s per receiver (median of rounds) with the gateway's ratios to Orthanc and storescp."""
    width = {n: max(13, len(n) + 4) for n in names}
    head = "".join(f"{n + '/s':>{width[n]}}" for n in names)
    print(f"{'set/assocs':<14}{head}  gw/orthanc gw/storescp")
    for key, per in _rows(results, prefix).items():
        med = {n: statistics.median(per[n]) for n in names}
        gw = med.get("gateway")
        ratios = [gw / med[p] if gw and med.get(p) else float("nan") for p in ("orthanc", "storescp")]
        print(f"{key:<14}" + "".join(f"{med[n]:>{width[n]}.1f}" for n in names) + f"{ratios[0]:>12.2f}"
              f"{ratios[1]:>12.2f}")  # fmt: skip


def _rows(results: Results, prefix: str) -> Results:
    """The "set/assocs" rows of one measure (prefix "" for the raw rates)."""
    if prefix:
        return {k[len(prefix) :]: v for k, v in results.items() if k.startswith(prefix)}
    return {k: v for k, v in results.items() if not k.startswith(tuple(COST_KEYS))}


def _scaling(results: Results, prefix: str, names: list[str], parallel: list[int]) -> str:
    """N associations ÷ one, per receiver and set, e.g. "photos gateway 0.59x orthanc 0.80x"."""
    rows, most, out = _rows(results, prefix), max(parallel), []
    for set_name in dict.fromkeys(k.split("/")[0] for k in rows):
        one, many = rows.get(f"{set_name}/1"), rows.get(f"{set_name}/{most}")
        if one and many and most > 1:
            cells = [f"{n} {statistics.median(many[n]) / statistics.median(one[n]):.2f}x" for n in names]
            out.append(f"{set_name}: " + ", ".join(cells))
    return "; ".join(out)


def _ceiling(results: Results, names: list[str], parallel: list[int]) -> str:
    """The most N associations ÷ one could reach on this machine, per receiver and set: every core busy with
    the receiver and its senders at their measured CPU per instance with N associations, divided by the rate
    with one. The senders share the cores here, so a receiver that scales perfectly still stops at it."""
    rows, most, out = _rows(results, ""), max(parallel), []
    recv, sent = _rows(results, CPU_KEY), _rows(results, "sender-cpu-ms/")
    for set_name in dict.fromkeys(k.split("/")[0] for k in rows):
        one, many = rows.get(f"{set_name}/1"), f"{set_name}/{most}"
        if not one or most < 2 or many not in recv or many not in sent:
            continue
        cells = []
        for n in names:
            per_instance = statistics.median(recv[many][n]) + statistics.median(sent[many][n])
            top = 1000 * (os.cpu_count() or 1) / per_instance / statistics.median(one[n])
            reached = statistics.median(rows[many][n]) / statistics.median(one[n]) / top
            cells.append(f"{n} {top:.2f}x (reached {100 * reached:.0f} %)")
        out.append(f"{set_name}: " + ", ".join(cells))
    return "; ".join(out)


def report(results: Results, args: argparse.Namespace) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"ingest: storescu -xy, TCP_NODELAY=1, median of {args.rounds} rounds; {os.cpu_count()} CPUs; "
        f"load average at the end {load}"
    )
    names = args.receivers
    _rate_table(results, "", names)
    print("first to last stored file (storescu start-up, association set-up and release left out):")
    _rate_table(results, STEADY_KEY, names)
    titles = {
        FIXED_KEY: "ms of a send of one file per association (a send's fixed cost; median of 3)",
        CPU_KEY: "CPU ms per instance of each receiver process (user + system, all its threads)",
        "sender-cpu-ms/": "CPU ms per instance of the storescu senders sending to it (all of them together)",
        "write-MB/s/": "MB/s the receiver process wrote to storage while receiving (/proc/<pid>/io)",
        "idle-%/": "% of the machine's CPU left idle during the send (both cores, other users' load counted)",
    }
    for prefix, title in titles.items():
        print(title + "; median of rounds:")
        for key, per in _rows(results, prefix).items():
            med = {n: statistics.median(per[n]) for n in names}
            print(f"{key:<14}" + "".join(f"{med[n]:>{max(13, len(n) + 4)}.2f}" for n in names))
    most = max(args.parallel)
    print(f"{most} associations / 1, raw: {_scaling(results, '', names, args.parallel)}")
    print(f"{most} associations / 1, fixed cost out: {_scaling(results, STEADY_KEY, names, args.parallel)}")
    print(f"{most} associations / 1, the cores' ceiling: {_ceiling(results, names, args.parallel)}")
    rates = _rows(results, "")
    for key, per in rates.items():
        for name in (n for n in per if n.startswith("gateway@") and "gateway" in per):
            new, base = statistics.median(per["gateway"]), statistics.median(per[name])
            print(f"{key}: this checkout {new:.1f}/s, {name} {base:.1f}/s = {new / base:.2f}x")
    for key, per in rates.items():
        if "gateway" in per and "gateway+console" in per:
            on, off = statistics.median(per["gateway+console"]), statistics.median(per["gateway"])
            print(f"console {key}: {on:.1f}/s on vs {off:.1f}/s off = {on / off:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20, help="London Set photos (max 78)")
    parser.add_argument("--small", type=int, default=200, help="~4 kB Secondary Capture objects")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4], help="associations per run")
    parser.add_argument(
        "--receivers",
        nargs="+",
        default=[n for n in RECEIVERS if n not in ("gateway+console", "gateway-pynetdicom")],
        choices=list(RECEIVERS),
    )
    parser.add_argument(
        "--console", action="store_true", help="also the gateway with its web console on (an admin polling)"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        nargs="*",
        default=[],
        help="also the gateway of these checkouts (e.g. a `git archive` of main), for before/after",
    )
    parser.add_argument(
        "--processes",
        type=int,
        nargs="*",
        default=[],
        help="also the gateway with receive_processes: N for each N > 1 (receiver gateway-pN)",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="where receivers write (default: /tmp)")
    parser.add_argument("--json", type=Path, help="also write the per-round numbers here")
    parser.add_argument("--stow", action="store_true", help="then STOW-RS vs C-STORE (bench/ingest_stow.py)")
    args = parser.parse_args()
    if args.console and "gateway+console" not in args.receivers:
        at = args.receivers.index("gateway") + 1 if "gateway" in args.receivers else 0
        args.receivers.insert(at, "gateway+console")
    for processes in sorted((n for n in set(args.processes) if n > 1), reverse=True):
        name = f"gateway-p{processes}"
        RECEIVERS[name] = gateway_processes(processes)
        args.receivers.insert(args.receivers.index("gateway") + 1 if "gateway" in args.receivers else 0, name)
    for repo in reversed(args.baseline):
        name = f"gateway@{repo.resolve().name}"
        RECEIVERS[name] = gateway_of(repo.resolve())
        args.receivers.insert(args.receivers.index("gateway") + 1 if "gateway" in args.receivers else 0, name)
    results = run(args)
    report(results, args)
    if args.stow:
        from bench.ingest_stow import run as run_stow

        run_stow(args.photos, args.small, args.rounds, batch=10)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
