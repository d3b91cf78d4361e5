"""Test seam: named points where the service can be made to pause, so a crash test can kill -9 it there.

Set ``VERA_GATEWAY_HOLD="point=seconds[,point=seconds]"`` (e.g. ``receive.after_spool=60``). When a point
is reached the service logs ``fault.hold`` (with the point name) and sleeps. Unset in production: a no-op.
Points: ``receive.after_spool`` (file spooled, ledger not yet committed), ``pipeline.after_outbox`` (outputs
fsynced, ledger not yet updated), ``forward.after_send`` (destination answered, ledger not yet updated).
"""

from __future__ import annotations

import os
import time
from functools import cache

import structlog

LOG = structlog.get_logger("gateway.faults")
ENV = "VERA_GATEWAY_HOLD"


@cache
def _holds(spec: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, seconds = part.partition("=")
        out[name.strip()] = float(seconds or 3600)
    return out


# Read once: the seam is set in the service's environment before it starts (the crash suite does so), and
# an os.environ lookup per received instance cost ~10 µs of GIL time on the receive path.
_SPEC = os.environ.get(ENV, "")


def hold(point: str) -> None:
    if not _SPEC:
        return
    seconds = _holds(_SPEC).get(point)
    if seconds:
        LOG.warning("fault.hold", point=point, seconds=seconds)
        time.sleep(seconds)
