"""CLI start-up: seconds from exec to exit for the pixel-free commands (target <= 0.3 s), median of N runs.

    .venv/bin/python bench/cli_startup.py [--runs 5]

Each command runs as ``python -m gateway.cli`` in a fresh interpreter, against an empty data dir with a ledger
(``echo`` against a closed loopback port: the answer is "not reachable", the cost is the start-up;
``rules explain`` of a small secondary capture). A bare ``python -c pass`` is the floor, printed first; each
row prints the median wall time, the median less the floor, the best, the median CPU time (user + system:
it moves less with the load) and the modules that cost the most
(``-X importtime``, cumulative, top level), and for ``rules explain`` why it loads pydicom. The
machine's load average is printed with it: on a shared machine the absolute numbers move with it, the floor
shows by how much.

Bytecode: an installed gateway runs from compiled bytecode (``pip install`` writes it; the Docker image ships
it). This bench therefore compiles once into a temporary cache (``PYTHONPYCACHEPREFIX``, one untimed run per
command) so the worktree stays clean. ``--no-bytecode`` measures as a checkout under
``PYTHONDONTWRITEBYTECODE=1`` runs instead (every one of our modules compiled from source on each start,
~0.05-0.06 s more for ``rules explain``).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core.ledger import SqliteLedger  # noqa: E402
from tests.conftest import make_small_sc, write_study  # noqa: E402

COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "status": ["status"],
    "quarantine list": ["quarantine", "list"],
    "rules check": ["rules", "check", str(ROOT / "dicom_rules" / "default.yaml")],
    "rules explain": ["rules", "explain", "{small_sc}"],
    "echo": ["echo", "NOBODY@127.0.0.1:9"],
}
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
# Commands that need pydicom by nature, and why (the others must not: tests/gateway/test_cli_imports.py)
NEEDS_PYDICOM = {
    "rules explain": "reads the DICOM file (pydicom without numpy/Pillow/requests; the text step only with"
    " --pixels)",
}


def use_bytecode(cache: Path, *, enabled: bool) -> None:
    """Run the commands from a bytecode cache in ``cache`` (as installed), or from source every time."""
    if enabled:
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
        ENV["PYTHONPYCACHEPREFIX"] = str(cache)
    else:
        ENV["PYTHONDONTWRITEBYTECODE"] = "1"
        ENV.pop("PYTHONPYCACHEPREFIX", None)


def seconds(argv: list[str]) -> tuple[float, float]:
    """(wall, CPU user+system) seconds of one run; CPU time moves less with the machine's load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], env=ENV, capture_output=True, timeout=60)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def top_imports(argv: list[str], count: int = 3) -> str:
    """The top-level imports that cost the most (cumulative ms), from ``-X importtime``."""
    command = [sys.executable, "-X", "importtime", *argv]
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True)
    costs: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|")
        if cumulative.strip().isdigit() and not name.startswith("  "):  # depth 0: what the command imported
            costs[name.strip()] = int(cumulative)
    top = sorted(costs.items(), key=lambda kv: -kv[1])[:count]
    return ", ".join(f"{name} {us / 1000:.0f}" for name, us in top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--no-bytecode", action="store_true", help="compile every module from source on each run"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        use_bytecode(Path(tmp) / "pycache", enabled=not args.no_bytecode)
        SqliteLedger(Path(tmp) / "ledger.sqlite3").close()
        small_sc = str(write_study(Path(tmp) / "in", [make_small_sc()])[0])
        floor_runs = [seconds(["-c", "pass"]) for _ in range(args.runs)]
        floor = statistics.median(wall for wall, _ in floor_runs)
        floor_cpu = statistics.median(cpu for _, cpu in floor_runs)
        print(
            f"load average {os.getloadavg()[0]:.1f}; python -c pass: {floor:.3f} s wall,"
            f" {floor_cpu:.3f} s CPU"
            f" (median of {args.runs});"
            f" {'no bytecode (sources compiled on each run)' if args.no_bytecode else 'bytecode cached'}"
        )
        print(
            f"{'command':<16} {'median s':>8} {'- floor':>7} {'best s':>7} {'CPU s':>6} {'<=0.3':>6}"
            "  top imports (ms)"
        )
        for name, command in COMMANDS.items():
            command = [a.replace("{small_sc}", small_sc) for a in command]
            full = ["-m", "gateway.cli", "--data-dir", tmp, *command]
            seconds(full)  # untimed: writes the bytecode cache (and warms the page cache) like earlier runs
            runs = [seconds(full) for _ in range(args.runs)]
            median = statistics.median(wall for wall, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            ok = "yes" if median <= 0.3 else "no"
            note = f"  [{NEEDS_PYDICOM[name]}]" if name in NEEDS_PYDICOM else ""
            best = min(wall for wall, _ in runs)
            line = f"{name:<16} {median:8.3f} {median - floor:7.3f} {best:7.3f} {cpu:6.3f} {ok:>6}"
            print(f"{line}  {top_imports(full)}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
