"""Group commit for the receive path: concurrent associations' ledger rows go into one transaction.

Why: with one transaction per instance, four associations took the ledger's write lock one instance at a
time, and each holder re-took the GIL several times inside it (sqlite3 drops the GIL around every step),
so the lock's queue grew behind whichever thread was running Python (docs/receive-path.md). Here the
threads that arrive while a commit is running wait (no lock, no GIL held) and the next commit takes all of
them at once: one BEGIN/COMMIT, one write-lock hold, each changed page written to the WAL once per batch.

Leader/follower, without a thread of its own: the first caller with nothing in flight commits its own row
at once (one association pays no hand-off); callers that arrive meanwhile queue; when a commit ends, the
leader answers its batch and hands the lead to the oldest queued caller, which commits everything queued.
Every caller returns only after the transaction holding its row committed: C-STORE Success still follows
the ledger commit. A failed batch is retried row by row, so one row's failure (and its 0xA700) is its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.core.ledger.models import ReceivedInstance, ReceiveResult

CommitMany = Callable[[Sequence[ReceivedInstance]], list[ReceiveResult]]
CommitOne = Callable[[ReceivedInstance], ReceiveResult]


@dataclass(eq=False)
class _Waiter:
    item: ReceivedInstance
    wake: threading.Lock = field(default_factory=threading.Lock)  # held until answered or made leader
    result: ReceiveResult | None = None
    error: BaseException | None = None
    lead: bool = False

    def __post_init__(self) -> None:
        self.wake.acquire()

    def outcome(self) -> ReceiveResult:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


class GroupCommit:
    """``record_received`` for many threads, committed in batches of up to ``max_batch`` rows."""

    def __init__(self, commit_many: CommitMany, commit_one: CommitOne, max_batch: int = 64) -> None:
        self.commit_many = commit_many
        self.commit_one = commit_one
        self.max_batch = max_batch
        self.batches = 0  # commits made, and rows in them: the bench's batch size
        self.rows = 0
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._leading = False

    def record_received(self, item: ReceivedInstance) -> ReceiveResult:
        with self._lock:
            waiter = _Waiter(item) if self._leading else None
            if waiter is not None:
                self._queue.append(waiter)
            self._leading = True
        if waiter is None:
            return self._commit_alone(item)
        waiter.wake.acquire()  # answered by a leader, or made the next leader
        if waiter.lead:
            self._lead()
        return waiter.outcome()

    def _commit_alone(self, item: ReceivedInstance) -> ReceiveResult:
        """Nothing was in flight: commit this row now (no waiter, no hand-off to wait for)."""
        try:
            result = self.commit_many([item])[0]
            self.batches += 1  # still the only leader: the counters are its own
            self.rows += 1
        finally:
            self._hand_off([])  # whoever queued meanwhile: the oldest leads the next commit
        return result

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
        try:
            self._commit(batch)
        except BaseException as exc:  # e.g. KeyboardInterrupt in the leader: no waiter is left hanging
            for waiter in batch:
                if waiter.result is None and waiter.error is None:
                    waiter.error = exc
            raise
        finally:
            self._hand_off(batch)

    def _hand_off(self, batch: list[_Waiter]) -> None:
        """Answer the batch; the oldest caller still queued (if any) leads the next commit."""
        with self._lock:
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._leading = False
            else:
                successor.lead = True
        # batch[0] is the leader itself (the queue's oldest); [] when it committed alone
        for waiter in batch[1:]:
            waiter.wake.release()
        if successor is not None:
            successor.wake.release()

    def _commit(self, batch: list[_Waiter]) -> None:
        try:
            results = self.commit_many([w.item for w in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for waiter in batch:  # one row's failure stays its own: each alone, in its own transaction
                try:
                    waiter.result = self.commit_one(waiter.item)
                except Exception as one:
                    waiter.error = one
            return
        self.batches += 1
        self.rows += len(batch)
        for waiter, result in zip(batch, results, strict=True):
            waiter.result = result
