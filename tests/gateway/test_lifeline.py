"""Worker processes never outlive the gateway: kill -9 of the main process alone (not its session) leaves no
forkserver or pipeline worker behind."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.conftest import GatewayProcess, gateway_config, wait_until

pytestmark = pytest.mark.integration
ORPHAN_DEADLINE_S = 30.0


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
    assert_descendants_end_with_the_main_process(config, at_least=3)  # forkserver + two workers


def assert_descendants_end_with_the_main_process(config: Any, at_least: int) -> None:
    """Start the gateway, wait for ``at_least`` descendants, kill -9 the main process alone (not its session)
    and check that every descendant ends by itself within 5 s."""
    gateway = GatewayProcess(config, {"name": "out", "path": str(config.data_dir.parent / "out")}).start()
    assert gateway.proc is not None
    main = gateway.proc.pid
    found: set[int] = set()
    try:
        found = wait_until(lambda: (kids := children(main)) and len(kids) >= at_least and kids, timeout=120)
        os.kill(main, signal.SIGKILL)  # the main process only: its descendants must notice by themselves
        gateway.proc.wait(timeout=30)
        # an orphan lives for ever; how soon a dying process is scheduled is the machine's load (~0.1 s quiet)
        wait_until(lambda: not any(alive(pid) for pid in found), timeout=ORPHAN_DEADLINE_S)
    finally:
        for pid in found:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        gateway.proc = None
