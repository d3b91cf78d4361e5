"""Durable, content-addressed file store: the spool, the outbox and the quarantine all use it.

Two ways to write, both durable before ``put`` returns:

- *atomic* (outbox, quarantine): a temp name in the final directory, fsync, rename, directory fsync; a crash
  leaves the whole file or nothing under the final name. Three journal commits on ext4.
- *in place* (the spool, on the receive path): the final name is created (O_EXCL), written and fdatasynced:
  one journal commit, which on ext4 and XFS also makes the new directory entry durable (the same choice as
  Orthanc's storage area). A crash can leave a partial file under its final name, but only one no ledger row
  refers to (the row is committed after the fdatasync): :meth:`ContentStore.verify` (the name is the sha256
  of the content) tells the two apart at start-up.

Names come from the sha256 of the bytes, never from UIDs or any other received text. The byte writer is
injectable: tests simulate ENOSPC/EIO.

Several receiver processes (``receive_processes`` > 1) write one spool: with ``cross_process`` a writer also
holds a byte-range lock of ``<root>/.put-locks`` (one of 4,096 stripes, by the digest's first three hex
digits) from before its ``O_EXCL`` create until after its fdatasync, so a second process storing the same
bytes waits and then finds the file complete and durable, never half-written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

Writer = Callable[[int, bytes], None]  # (fd, data) → None; raises OSError on failure
TMP_SUFFIX = ".tmp"


def write_all(fd: int, data: bytes) -> None:
    """Default writer: loop until every byte is written."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create a directory (and missing parents) durably: the parent of each new entry is fsynced."""
    if path.is_dir():
        return
    ensure_dir(path.parent)
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, writer: Writer = write_all) -> None:
    """Write ``data`` to ``path`` atomically and durably; on any error nothing is left behind."""
    ensure_dir(path.parent)
    tmp = path.parent / f".{uuid.uuid4().hex}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            writer(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def write_in_place(path: str | Path, data: bytes, writer: Writer = write_all) -> None:
    """Create ``path`` (it must not exist), write ``data`` and fdatasync it; on any error remove it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            writer(fd, data)
            os.fdatasync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _datasync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
    finally:
        os.close(fd)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredFile:
    """A file in a content-addressed store: ``relpath`` is relative to the store root."""

    sha256: str
    relpath: str
    size: int


class ContentStore:
    """Files named ``ab/abcdef….dcm`` after the sha256 of their bytes."""

    def __init__(
        self,
        root: Path,
        writer: Writer = write_all,
        suffix: str = ".dcm",
        in_place: bool = False,
        cross_process: bool = False,
    ) -> None:
        self.root = root
        self.writer = writer
        self.suffix = suffix
        self.in_place = in_place
        self._shards: set[str] = set()  # ``ab`` directories known to exist durably (in place)
        self._writing: dict[str, threading.Lock] = {}  # digests being written in place, held by the writer
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self._stripes: int | None = None  # the cross-process lock file (cross_process only)
        if cross_process:
            self._stripes = os.open(root / ".put-locks", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if in_place:
            self._make_shards()

    def _make_shards(self) -> None:
        """Create the 256 ``ab/`` directories up front (one directory fsync), not one by one on receive."""
        created = False
        for i in range(256):
            shard = self.root / f"{i:02x}"
            if not shard.is_dir():
                shard.mkdir(exist_ok=True)
                created = True
            self._shards.add(f"{i:02x}")
        if created:
            fsync_dir(self.root)

    def put(self, data: bytes, digest: str | None = None) -> StoredFile:
        """Store bytes durably; storing the same bytes twice is a no-op. ``digest``: the sha256 of ``data``
        when the caller already hashed it (the lean SCP hashes each fragment as it arrives)."""
        digest = digest or sha256_hex(data)
        rel = f"{digest[:2]}/{digest}{self.suffix}"
        if self.in_place:
            self._put_in_place(digest, rel, data)
            return StoredFile(sha256=digest, relpath=rel, size=len(data))
        final = self.root / rel
        if not (final.exists() and final.stat().st_size == len(data)):
            atomic_write(final, data, self.writer)
        return StoredFile(sha256=digest, relpath=rel, size=len(data))

    def _put_in_place(self, digest: str, rel: str, data: bytes) -> None:
        """One writer per digest; a second one waits for the first's lock and then finds the file complete.
        Plain str paths and a C lock per write: this runs once per received instance. Across processes the
        key is the digest's stripe (a POSIX record lock belongs to the process, not to the thread)."""
        key = digest if self._stripes is None else digest[:3]
        mine = threading.Lock()
        mine.acquire()
        while True:
            with self._lock:
                busy = self._writing.setdefault(key, mine)
            if busy is mine:
                break
            with busy:  # released when that writer finished (or failed and unlinked)
                pass
        try:
            with self._other_processes(key):
                self._write_once(rel, data)
        finally:
            with self._lock:
                del self._writing[key]
            mine.release()

    @contextlib.contextmanager
    def _other_processes(self, key: str) -> Iterator[None]:
        """Hold this stripe against other processes (nothing to hold unless ``cross_process``)."""
        if self._stripes is None:
            yield
            return
        stripe = int(key, 16)
        fcntl.lockf(self._stripes, fcntl.LOCK_EX, 1, stripe)
        try:
            yield
        finally:
            fcntl.lockf(self._stripes, fcntl.LOCK_UN, 1, stripe)

    def _write_once(self, rel: str, data: bytes) -> None:
        final = f"{self.root}/{rel}"
        if rel[:2] not in self._shards:
            ensure_dir(self.root / rel[:2])
            self._shards.add(rel[:2])
        try:
            write_in_place(final, data, self.writer)  # O_EXCL: a new file, the usual case (no stat first)
            return
        except FileExistsError:
            pass
        with contextlib.suppress(FileNotFoundError):
            if os.stat(final).st_size == len(data):
                _datasync(final)  # complete; synced once more in case its writer died before its own sync
                return  # partial files were removed at start-up; writers here finish or unlink
            os.unlink(final)  # a partial leftover of this run (a failed write; a receiver killed mid-write)
        write_in_place(final, data, self.writer)

    def verify(self, relpath: str) -> bool:
        """Whether the file's content matches its name (the sha256): False for a partial write."""
        path = self.root / relpath
        digest = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            return False
        return path.name == digest.hexdigest() + self.suffix

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    def read(self, relpath: str) -> bytes:
        return (self.root / relpath).read_bytes()

    def discard(self, relpath: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / relpath).unlink()

    def clean_temp_files(self) -> int:
        """Remove temp files a crash left behind (never a complete, renamed file). Returns how many."""
        removed = 0
        for tmp in self.root.rglob(f".*{TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
        return removed
