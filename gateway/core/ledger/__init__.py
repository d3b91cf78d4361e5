"""The ledger: every instance and study job with its state (the states and records: :mod:`.models`).

:class:`Ledger` (:mod:`.base`) is the interface, one fenced method per state transition; :class:`SqlLedger`
(:mod:`.sql`) implements it in portable SQL (:mod:`.statements`); :class:`SqliteLedger` (:mod:`.sqlite`)
is the one-node backend. Callers get one from :func:`open_ledger` and pass and receive frozen records.
No SQL outside this package.

A new backend (e.g. PostgreSQL for a cluster) subclasses :class:`SqlLedger`: it creates
``statements.SCHEMA`` with its own ``{id}`` column type, yields a :class:`~.sql.Tx` from ``_write`` (one
serialised transaction) and ``_read``, converts ``?`` parameters if its driver needs to, raises
:class:`LedgerError` from its driver's errors, is chosen in :func:`open_ledger`, and joins ``BACKENDS`` in
``tests/gateway/test_ledger.py`` (the contract every backend passes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway.core.ledger.base import Ledger
from gateway.core.ledger.models import (
    Deidentified,
    Dropped,
    Duplicate,
    Forwarded,
    ForwardGaveUp,
    ForwardOutcome,
    ForwardRecorded,
    ForwardRetry,
    Grouped,
    InstanceOutcome,
    InstanceRecord,
    InstanceState,
    Job,
    JobInstance,
    JobRecord,
    JobRun,
    JobState,
    LedgerCounts,
    LedgerError,
    OutputItem,
    PurgedFiles,
    Quarantined,
    QuarantineItem,
    QuarantineKind,
    ReceivedInstance,
    ReceiveResult,
    Recovery,
    StateCount,
    StudySummary,
)
from gateway.core.ledger.sql import SqlLedger
from gateway.core.ledger.sqlite import SqliteLedger

if TYPE_CHECKING:
    from gateway.core.config import GatewayConfig


def open_ledger(
    config: GatewayConfig, clock: Callable[[], float] = time.time, receive_path: bool = False
) -> Ledger:
    """The ledger of a gateway: SQLite at ``config.ledger_path``, or PostgreSQL when ``ledger`` names one.
    ``receive_path``: the intake's own handle, whose commits need only survive a process crash (the spool
    file is the durable record; see :mod:`gateway.core.recovery`). PostgreSQL commits are always durable."""
    if config.ledger is not None:
        from gateway.core.ledger.postgres import PostgresLedger  # psycopg only in cluster mode

        return PostgresLedger(config.ledger, clock, lease_s=config.forward_lease_s)
    if receive_path:
        several = config.receive_processes > 1  # receiver processes: their writers queue on a file lock
        return SqliteLedger(
            config.ledger_path, clock=clock, synchronous="NORMAL", shared=True, process_lock=several
        )
    return SqliteLedger(config.ledger_path, clock=clock)


__all__ = [
    "Deidentified",
    "Dropped",
    "Duplicate",
    "ForwardGaveUp",
    "ForwardOutcome",
    "ForwardRecorded",
    "ForwardRetry",
    "Forwarded",
    "Grouped",
    "InstanceOutcome",
    "InstanceRecord",
    "InstanceState",
    "Job",
    "JobInstance",
    "JobRecord",
    "JobRun",
    "JobState",
    "Ledger",
    "LedgerCounts",
    "LedgerError",
    "OutputItem",
    "PurgedFiles",
    "QuarantineItem",
    "QuarantineKind",
    "Quarantined",
    "ReceiveResult",
    "ReceivedInstance",
    "Recovery",
    "SqlLedger",
    "SqliteLedger",
    "StateCount",
    "StudySummary",
    "open_ledger",
]
