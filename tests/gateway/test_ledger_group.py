"""Group commit of received rows (gateway/core/ledger/group.py) on a real SQLite ledger: every caller gets
its own row back only once it is committed, concurrent callers share transactions, and a row that fails
alone fails alone (a batch with duplicates inside: tests/gateway/test_ledger.py, every backend)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.core.ledger import Duplicate, LedgerError, ReceivedInstance, ReceiveResult, SqliteLedger
from gateway.core.ledger.group import GroupCommit, _Waiter
from tests.gateway.test_ledger import item


def receive_ledger(tmp_path: Path) -> SqliteLedger:
    return SqliteLedger(tmp_path / "ledger.sqlite3", synchronous="NORMAL", shared=True)


def committed_ids(path: Path) -> set[int]:
    """Instance ids another connection sees: what is committed."""
    with sqlite3.connect(path) as db:
        return {int(row[0]) for row in db.execute("SELECT id FROM instances")}


def test_concurrent_callers_share_transactions_and_return_after_their_commit(tmp_path: Path) -> None:
    ledger = receive_ledger(tmp_path)
    first_commit_running, release_first = threading.Event(), threading.Event()

    def commit_many(items: Sequence[ReceivedInstance]) -> list[ReceiveResult]:
        if not first_commit_running.is_set():  # hold the first commit until the others have queued
            first_commit_running.set()
            assert release_first.wait(10)
        return ledger.record_received_many(items)

    group = GroupCommit(commit_many, ledger.record_received)
    results: dict[str, int] = {}
    seen_committed: dict[str, bool] = {}

    def receive(sop: str) -> None:
        result = group.record_received(item(sop))
        results[sop] = result.instance_id
        seen_committed[sop] = result.instance_id in committed_ids(tmp_path / "ledger.sqlite3")

    first = threading.Thread(target=receive, args=("s0",))
    first.start()
    assert first_commit_running.wait(10)
    others = [threading.Thread(target=receive, args=(f"s{n}",)) for n in range(1, 9)]
    for thread in others:
        thread.start()
    while len(group._queue) < 8:  # all eight queued behind the held commit
        threading.Event().wait(0.005)
    release_first.set()
    for thread in [first, *others]:
        thread.join(10)
    assert sorted(results) == sorted(f"s{n}" for n in range(9))
    assert len(set(results.values())) == 9  # each its own row
    assert all(seen_committed.values())  # every caller returned after its row was committed
    assert (group.batches, group.rows) == (2, 9)  # the eight queued callers shared one transaction


def test_a_row_that_fails_fails_alone_and_the_batch_commits_the_rest(tmp_path: Path) -> None:
    ledger = receive_ledger(tmp_path)

    def refuse_bad(items: Sequence[ReceivedInstance]) -> list[ReceiveResult]:
        if any(i.sop_key == "bad" for i in items):
            raise LedgerError("sqlite: refused")  # a storage error tied to one row
        return ledger.record_received_many(items)

    def commit_one(one: ReceivedInstance) -> ReceiveResult:
        return refuse_bad([one])[0]

    group = GroupCommit(refuse_bad, commit_one)
    waiters = [_Waiter(item(sop)) for sop in ("a", "bad", "b")]
    group._queue.extend(waiters)  # three callers queued behind one commit
    group._leading = True
    group._lead()
    assert isinstance(waiters[1].error, LedgerError)
    assert waiters[0].result is not None and waiters[2].result is not None
    assert committed_ids(tmp_path / "ledger.sqlite3") == {
        waiters[0].result.instance_id,
        waiters[2].result.instance_id,
    }
    assert group._leading is False  # nothing queued: the next caller commits at once
    with pytest.raises(LedgerError):
        group.record_received(item("bad"))
    assert group.record_received(item("c")).duplicate is Duplicate.NO
