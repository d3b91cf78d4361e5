"""Start-up recovery of the receive path: partial spool files, and instances whose row an OS crash lost.

The receive path acknowledges an instance after one journal commit: the spool file is written in place
and fdatasynced, then its ledger row is committed with ``synchronous=NORMAL`` (gateway/core/spool.py).
A *process* crash (kill -9) loses nothing: committed WAL frames are in the OS page cache. An *OS* crash or
power loss can lose the last rows, never their spool files. So at start-up:

- a spool file whose content does not match its name (sha256) is a write that never finished: never
  acknowledged, removed;
- a complete spool file without a row is, after a process crash, an instance that was never acknowledged
  (the sender re-sends it; it is counted, as before); after an *OS crash* (the previous run did not stop
  cleanly and the kernel boot id changed) it may have been acknowledged, so it gets its row back, quarantined
  with reason ``recovered-after-os-crash`` (the calling AE and address are not in the file): nothing is lost,
  and an administrator releases it (``vera-gateway quarantine replay``).

The run marker (``<data_dir>/run.json``: boot id, pid, clean stop) tells the two crashes apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.core.ledger import Ledger
from gateway.core.spool import ContentStore, atomic_write

LOG = structlog.get_logger(__name__)
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
RECOVERED_REASON = "recovered-after-os-crash"


def boot_id(path: Path = BOOT_ID) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class RunMarker:
    path: Path

    def previous(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write(self, clean: bool, current_boot: str) -> None:
        atomic_write(
            self.path, json.dumps({"boot_id": current_boot, "pid": os.getpid(), "clean": clean}).encode()
        )


def os_crashed(previous: dict[str, Any] | None, current_boot: str) -> bool:
    """The previous run neither stopped cleanly nor ran under this boot: the machine went down under it."""
    return bool(previous) and not previous.get("clean") and previous.get("boot_id") != current_boot  # type: ignore[union-attr]


def recover_spool(spool: ContentStore, ledger: Ledger, recover: Any, after_os_crash: bool) -> dict[str, int]:
    """Remove partial spool files; after an OS crash, give complete unrecorded ones their row back
    (``recover(relpath) -> bool``). Returns counts for the start-up log."""
    known = ledger.spool_paths()
    counts = {"spool_partial_removed": 0, "spool_orphans": 0, "recovered_after_os_crash": 0}
    for path in spool.root.glob(f"*/*{spool.suffix}"):
        rel = str(path.relative_to(spool.root))
        if rel in known:
            continue
        if not spool.verify(rel):
            spool.discard(rel)
            counts["spool_partial_removed"] += 1
        elif after_os_crash and recover(rel):
            counts["recovered_after_os_crash"] += 1
        else:
            counts["spool_orphans"] += 1
    if counts["recovered_after_os_crash"]:
        LOG.warning("spool.recovered_after_os_crash", instances=counts["recovered_after_os_crash"])
    return counts
