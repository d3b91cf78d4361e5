"""Hot reload of a rule file (and its includes) without a restart.

Usage by the gateway, between jobs::

    watcher = RulesWatcher(Path("rules.yaml"), default_engine=config.engine)   # raises RulesError if invalid
    ...
    watcher.poll()                      # cheap: stats the files; reloads only when they changed
    decision = watcher.current().decide(ds, calling_ae, calling_ip)

``current()`` always returns a complete, validated :class:`RuleSet`; a job keeps the one it started with.
``poll()`` returns True when a new version was swapped in (logged as ``rules.reloaded`` with its sha256).
An invalid edit is logged as ``rules.rejected`` with every file:line error and the old rules keep serving;
the same broken content is not re-reported on every poll. Time is injected (``clock``) for tests.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from dicom_rules.loader import load_rules
from dicom_rules.ruleset import RuleSet
from dicom_rules.source import RulesError, combined_sha256, load_source

log = structlog.get_logger(__name__)

Fingerprint = tuple[tuple[str, int, int], ...]


class RulesWatcher:
    """Polls a rule file and its includes; swaps in a valid new RuleSet atomically; keeps the old on errors"""

    def __init__(
        self,
        path: Path,
        *,
        default_engine: str = "surrogate",
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._default_engine = default_engine
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._current = load_rules(self.path, default_engine=default_engine)
        self._files: tuple[Path, ...] = self._current.files or (self.path,)
        self._fingerprint = _fingerprint(self._files)
        self._content = self._current.sha256  # the version actually loaded
        self._rejected: str | None = None
        # (loaded | reloaded | rejected, wall-clock time, file:line errors): what an admin page shows
        self.last_result: tuple[str, float, tuple[str, ...]] = ("loaded", time.time(), ())
        self._next_check = clock() + interval_s
        log.info(
            "rules.loaded",
            rules=self._current.name,
            sha256=self._current.sha256,
            routes=len(self._current.routes),
        )
        if self._current.warnings:
            log.warning("rules.warnings", rules=self._current.name, warnings=list(self._current.warnings))

    def current(self) -> RuleSet:
        """The rule set in force; a plain attribute read, safe from any thread."""
        return self._current

    def poll(self, *, force: bool = False) -> bool:
        """Reload if the files changed since the last look (at most every ``interval_s``). True if swapped."""
        now = self._clock()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self._interval_s
        with self._lock:
            fingerprint = _fingerprint(self._files)
            if fingerprint == self._fingerprint and not force:
                return False
            self._fingerprint = fingerprint
            content = _content_hash(self._files)
            if content in (self._content, self._rejected):
                return False
            return self._reload(content)

    def _reload(self, content: str) -> bool:
        try:
            rules = load_rules(self.path, default_engine=self._default_engine)
        except Exception as exc:  # any failure keeps the old rules serving: RulesError, OSError, or a bug
            self._files = _attempted_files(self.path, self._files)
            self._fingerprint = _fingerprint(self._files)
            self._rejected = _content_hash(self._files)
            errors = [str(e) for e in exc.errors] if isinstance(exc, RulesError) else [type(exc).__name__]
            self.last_result = ("rejected", time.time(), tuple(errors))
            log.error(
                "rules.rejected",
                rules_path=str(self.path),
                errors=errors,
                serving_sha256=self._current.sha256,
            )
            return False
        old = self._current
        self._current = rules
        self._files = rules.files or (self.path,)
        self._fingerprint = _fingerprint(self._files)
        self._content = rules.sha256
        if _content_hash(self._files) != rules.sha256:
            self._fingerprint = ()  # edited while loading: look again at the next poll
        self._rejected = None
        self.last_result = ("reloaded", time.time(), ())
        if rules.warnings:
            log.warning("rules.warnings", rules=rules.name, warnings=list(rules.warnings))
        log.info(
            "rules.reloaded",
            rules=rules.name,
            sha256=rules.sha256,
            previous_sha256=old.sha256,
            routes=len(rules.routes),
        )
        return True


def _attempted_files(path: Path, files: tuple[Path, ...]) -> tuple[Path, ...]:
    """Also watch includes that the rejected version names, so fixing one of them is noticed."""
    try:
        attempted = load_source(path).files
    except OSError:
        attempted = []
    return tuple(dict.fromkeys((*files, *attempted)))


def _fingerprint(files: tuple[Path, ...]) -> Fingerprint:
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(f), -1, -1))
    return tuple(out)


def _content_hash(files: tuple[Path, ...]) -> str:
    """Same formula as :attr:`RuleSet.sha256`, so a version can be compared with what was loaded."""
    digests = []
    for f in files:
        try:
            digests.append(hashlib.sha256(f.read_bytes()).hexdigest())
        except OSError:
            digests.append(hashlib.sha256(b"missing:" + str(f).encode()).hexdigest())
    return combined_sha256(digests)
