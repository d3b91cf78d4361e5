"""Durable, content-addressed file store: the spool, the outbox and the quarantine all use it.

A file is written to a temp name in its final directory, fsynced, renamed, and the directory is fsynced, so a
crash leaves either the whole file or nothing under the final name. Names come from the sha256 of the bytes,
never from UIDs or any other received text. The byte writer is injectable: tests simulate ENOSPC/EIO.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable
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

    def __init__(self, root: Path, writer: Writer = write_all, suffix: str = ".dcm") -> None:
        self.root = root
        self.writer = writer
        self.suffix = suffix
        root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> StoredFile:
        """Store bytes durably; storing the same bytes twice is a no-op."""
        digest = sha256_hex(data)
        rel = f"{digest[:2]}/{digest}{self.suffix}"
        final = self.root / rel
        if not (final.exists() and final.stat().st_size == len(data)):
            atomic_write(final, data, self.writer)
        return StoredFile(sha256=digest, relpath=rel, size=len(data))

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
