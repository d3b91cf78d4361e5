"""How long the serving gateway holds the GIL per received instance: ``py-spy record --gil`` samples the
``vera-gateway serve`` process (as ``bench/ingest.py`` starts it) while DCMTK ``storescu -xy`` sends small
objects (or photos) over N associations; GIL-held samples ÷ sampling rate ÷ instances is the GIL time per
instance, split by where it was spent. With N associations in one process, 1 ÷ that time bounds the rate
(the threads take turns on the GIL), so this is the number to cut for four associations against one; the load
on a shared machine moves it far less than the rates. ``--repo DIR`` adds another checkout (e.g. a
``git archive`` of main), measured in alternating rounds.

    PYTHONPATH=. .venv/bin/python bench/receive_gil.py [--set small-4kB] [--parallel 4] [--rounds 4]
        [--repo DIR]

Needs py-spy (``pip install -e .[bench]``) and ptrace rights over the gateway (root, or ptrace_scope 0).
A GIL-holding thread that the OS has descheduled still holds the GIL: on a busy machine the numbers include
that wait; compare checkouts in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.ingest import gateway, make_sets, send  # noqa: E402

RATE = 250  # samples/s: py-spy keeps up with this on a busy machine
WHERE = {  # a stack containing the key is counted under the label (first match)
    "parse_received": "parse",
    "parse_header": "parse",
    "check_conformance": "checks",
    "Intake._facts": "keys",
    "ContentStore.put": "spool",
    "record_received": "ledger",
    "LeanAssociation._pdata": "association, rest",  # PDUs, DIMSE, the response, the intake's rest
    "Scheduler": "scheduler",
    "Doorman": "doorman",
}


def spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [py_spy, "record", "-p", str(pid), "-r", str(RATE), "--gil", "--threads", "--format", "raw"]
    return subprocess.Popen([*cmd, "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gil_ms(out: Path, count: int) -> dict[str, float]:
    """GIL-held ms per instance from py-spy's raw stacks: in all, and by where (``WHERE``)."""
    held: Counter[str] = Counter()
    for line in out.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        n = int(samples)
        held["GIL held"] += n
        held[next((label for key, label in WHERE.items() if key in stack), "other")] += n
    return {k: 1000 * v / RATE / count for k, v in held.items()}


def one_round(repo: Path, files: list[list[Path]], parallel: int, work: Path) -> dict[str, float]:
    """A fresh gateway of ``repo``; py-spy on it while the sets are sent one after the other."""
    out = work / "gil.txt"
    with gateway(work / "gw", repo=repo) as (port, aec, pid):
        send(port, aec, files[0][:parallel], parallel)  # warm-up: imports, first-association costs
        recorder = spy(pid, out)
        time.sleep(1.5)  # py-spy attached
        started, count = time.perf_counter(), 0
        for chunk in [files[0][parallel:], *files[1:]]:
            send(port, aec, chunk, parallel)
            count += len(chunk)
        seconds = time.perf_counter() - started
        recorder.send_signal(2)
        recorder.wait(30)
    return {"rate": count / seconds, **gil_ms(out, count)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["small-4kB", "photos"], default="small-4kB")
    parser.add_argument("--count", type=int, default=400, help="instances per send (photos: at most 78)")
    parser.add_argument("--sends", type=int, default=3, help="sends per round (fresh instances each)")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repo", type=Path, default=None, help="another checkout, measured in turn")
    args = parser.parse_args()
    checkouts = {
        "this checkout": REPO,
        **({args.repo.resolve().name: args.repo.resolve()} if args.repo else {}),
    }
    rows: dict[str, list[dict[str, float]]] = {label: [] for label in checkouts}
    photos, small = (args.count, 0) if args.set == "photos" else (0, args.count)
    for _ in range(args.rounds):
        for label, repo in checkouts.items():
            work = Path(tempfile.mkdtemp(prefix="bench-gil-"))
            try:
                files = [make_sets(work / f"in{i}", photos, small)[args.set] for i in range(args.sends)]
                rows[label].append(one_round(repo, files, args.parallel, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
    keys = ["rate", "GIL held", *dict.fromkeys(WHERE.values()), "other"]
    print(f"{args.set}, {args.parallel} associations: GIL-held ms per instance (py-spy --gil, {RATE}/s), "
          f"median of {args.rounds} rounds (each round's values in brackets)")  # fmt: skip
    for label, found in rows.items():
        print(f"\n{label}")
        for key in keys:
            values = [r.get(key, 0.0) for r in found]
            print(f"  {key:<14}{statistics.median(values):>9.3f}  ({', '.join(f'{v:.3f}' for v in values)})")
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
