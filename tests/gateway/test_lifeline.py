"""Worker processes never outlive the gateway: kill -9 of the main process alone (not its session) leaves no
forkserver or pipeline worker behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.gateway.conftest import GatewayProcess, gateway_config, wait_until

pytestmark = pytest.mark.integration


def children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (walks /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_kill9_of_the_main_process_leaves_no_worker_alive(tmp_path: Path) -> None:
    config = gateway_config(tmp_path / "gw", workers=2)
    gateway = GatewayProcess(config, {"name": "out", "path": str(tmp_path / "out")}).start()
    assert gateway.proc is not None
    main = gateway.proc.pid
    try:
        workers = wait_until(lambda: (found := children(main)) and len(found) >= 3 and found, timeout=60)
        os.kill(main, signal.SIGKILL)  # the main process only: its workers must notice by themselves
        gateway.proc.wait(timeout=10)
        started = time.monotonic()
        wait_until(lambda: not any(alive(pid) for pid in workers), timeout=10)
        assert time.monotonic() - started < 5
    finally:
        for pid in workers if "workers" in locals() else ():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        gateway.proc = None
