"""Spool: atomic writes, content-addressed files, durable shard directories."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest

from gateway.core.spool import ContentStore, StoredFile, atomic_write, write_all


def test_atomic_write_leaves_nothing_when_disk_full(tmp_path: Path) -> None:
    def full_disk(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    store = ContentStore(tmp_path / "spool", writer=full_disk)
    with pytest.raises(OSError):
        store.put(b"x" * 100)
    assert [p for p in (tmp_path / "spool").rglob("*") if p.is_file()] == []


def test_content_store_names_files_by_hash_and_is_idempotent(tmp_path: Path) -> None:
    store = ContentStore(tmp_path)
    first, second = store.put(b"abc"), store.put(b"abc")
    assert first == second and first.relpath.endswith(first.sha256 + ".dcm")
    assert store.read(first.relpath) == b"abc"
    (tmp_path / "ab").mkdir()
    (tmp_path / "ab" / ".dead.tmp").write_bytes(b"half")
    assert store.clean_temp_files() == 1


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    atomic_write(tmp_path / "f", b"one")
    atomic_write(tmp_path / "f", b"two")
    assert (tmp_path / "f").read_bytes() == b"two" and len(list(tmp_path.iterdir())) == 1


def test_new_shard_directory_is_made_durable_before_the_file_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.core.spool

    synced: list[Path] = []
    real = gateway.core.spool.fsync_dir
    monkeypatch.setattr(gateway.core.spool, "fsync_dir", lambda p: (synced.append(p), real(p))[1])
    store = ContentStore(tmp_path / "spool")
    stored = store.put(b"photo")
    shard = store.path(stored.relpath).parent
    assert synced == [tmp_path / "spool", shard]  # the root holds the new shard entry; [shard] before


def test_concurrent_in_place_writers_of_the_same_bytes_leave_one_complete_file(tmp_path: Path) -> None:
    writes: list[int] = []

    def slow_writer(fd: int, data: bytes) -> None:  # the first writer is still writing when the rest arrive
        writes.append(fd)
        time.sleep(0.05)
        write_all(fd, data)

    store = ContentStore(tmp_path / "spool", writer=slow_writer, in_place=True)
    data = os.urandom(10_000)
    stored: list[StoredFile] = []
    threads = [threading.Thread(target=lambda: stored.append(store.put(data))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(stored) == 6 and len({s.relpath for s in stored}) == 1
    assert len(writes) == 1  # the others waited for it, then found the file complete
    assert store.verify(stored[0].relpath) and store.read(stored[0].relpath) == data


def test_an_in_place_writer_that_failed_leaves_the_digest_to_the_next(tmp_path: Path) -> None:
    failures = [OSError(errno.ENOSPC, "No space left on device")]

    def full_once(fd: int, data: bytes) -> None:
        if failures:
            raise failures.pop()
        write_all(fd, data)

    store = ContentStore(tmp_path / "spool", writer=full_once, in_place=True)
    data = os.urandom(5_000)
    with pytest.raises(OSError):
        store.put(data)
    assert not list((tmp_path / "spool").rglob("*.dcm"))  # nothing partial left under the final name
    assert store.verify(store.put(data).relpath)


def test_an_in_place_put_replaces_a_partial_file_and_keeps_a_complete_one(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "spool", in_place=True)
    data = os.urandom(5_000)
    relpath = store.put(data).relpath
    store.path(relpath).write_bytes(data[:100])  # what a crash mid-write leaves
    assert store.put(data).relpath == relpath and store.read(relpath) == data
    before = store.path(relpath).stat().st_mtime_ns
    store.put(data)  # complete already: not written again
    assert store.path(relpath).stat().st_mtime_ns == before
