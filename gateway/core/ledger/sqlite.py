"""The SQLite backend (one node): WAL, synchronous=FULL, one connection per thread, BEGIN IMMEDIATE.

A commit is durable (fsynced) before a transition returns, so "C-STORE Success only after the ledger
commit" and every state survive kill -9. The receive path's own connection uses ``synchronous=NORMAL``:
its commit survives a process crash (kill -9) but not an OS crash, because the fdatasynced spool file it
points to is the durable record and start-up recovery rebuilds a lost row from it (gateway/core/recovery.py).

With several receiver processes (``receive_processes`` > 1) each has its own receive-path connection, and
those writers also queue on an ``flock`` of ``<ledger>.receive-lock`` (``process_lock``): the kernel wakes the
next writer the moment the last one unlocks, where SQLite's busy handler would sleep 1, 2, 5, ... ms.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.core.ledger import statements
from gateway.core.ledger.models import LedgerError
from gateway.core.ledger.sql import SqlLedger, Tx

PRIMARY_KEY = "INTEGER PRIMARY KEY"
# One writer lock per database file for this process's threads. SQLite's own busy handler polls with sleeps
# of 1, 2, 5, 10, ... ms, so two association threads committing at the same moment lost milliseconds each;
# queued on a lock, the next writer starts the moment the last one commits. Other processes (pipeline
# workers) still meet SQLite's lock and busy timeout.
_WRITE_LOCKS: dict[Path, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: Path) -> threading.RLock:
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(path.resolve(), threading.RLock())


def _failed(exc: sqlite3.Error) -> LedgerError:
    return LedgerError(f"sqlite: {type(exc).__name__}: {exc}")


class SqliteLedger(SqlLedger):
    """Thread-safe: one SQLite connection per thread, explicit IMMEDIATE transactions.

    ``shared=True``: one connection for all threads, every read and write under the writer lock (the receive
    path: its association threads only write rows and read one back. With a connection each, every commit by
    one made the others re-read the changed pages from the WAL: ~12 preads per instance at four associations).
    """

    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        synchronous: str = "FULL",
        shared: bool = False,
        process_lock: bool = False,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be FULL or NORMAL")
        super().__init__(clock)
        self.path = path
        self.synchronous = synchronous
        self.shared = shared
        self._local: Any = _Shared() if shared else threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = _write_lock(path)
        self._process_lock: int | None = None
        if process_lock:
            lock_path = path.with_name(path.name + ".receive-lock")
            self._process_lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            self._conn().executescript(statements.SCHEMA.format(id=PRIMARY_KEY))
        except sqlite3.Error as exc:
            raise _failed(exc) from exc

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextmanager
    def _other_processes(self) -> Iterator[None]:
        """Queue behind the other receiver processes' writers (only with ``process_lock``)."""
        if self._process_lock is None:
            yield
            return
        fcntl.flock(self._process_lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._process_lock, fcntl.LOCK_UN)

    @contextmanager
    def _write(self) -> Iterator[Tx]:
        with self._write_lock, self._other_processes():
            try:
                db = self._conn()
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _failed(exc) from exc
            try:
                yield Tx(db.cursor())
                db.execute("COMMIT")
            except BaseException as exc:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise _failed(exc) from exc
                raise

    @contextmanager
    def _read(self) -> Iterator[Tx]:
        with self._write_lock if self.shared else contextlib.nullcontext():
            try:
                yield Tx(self._conn().cursor())
            except sqlite3.Error as exc:
                raise _failed(exc) from exc


class _Shared:
    """Stands in for ``threading.local`` when all threads share the one connection."""

    conn: sqlite3.Connection | None = None


@dataclass(frozen=True)
class Integrity:
    problems: list[str]  # empty when the database is sound
    journal_mode: str


def check_integrity(path: Path) -> Integrity:
    """``PRAGMA integrity_check`` on a read-only connection (the doctor); raises LedgerError when the file
    cannot be opened as a database."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            result = [str(row[0]) for row in db.execute("PRAGMA integrity_check")]
            journal = str(db.execute("PRAGMA journal_mode").fetchone()[0])
    except sqlite3.Error as exc:
        raise _failed(exc) from exc
    return Integrity([] if result == ["ok"] else result, journal)
