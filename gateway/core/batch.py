"""``vera-gateway anonymize``: a folder through the service's stage sequence, on N worker processes.

The folder is streamed: a first pass reads headers only (no Pixel Data) to cut it into jobs, one per study
(as the service's scheduler does, so that the same inputs form the same pairing groups and give the same
bytes); only the paths stay in memory. Jobs go to a pool of ``workers`` processes running
:func:`gateway.core.pipeline.process_job` (a bounded number in flight), which writes
``<de-identified SOP Instance UID>.dcm`` files. A journal of finished jobs (keyed hashes, no names) lets an
interrupted run resume: jobs already done are skipped. ``anonymize-summary.json`` (counts per outcome and
quarantine reasons, no PHI) is written next to the outputs at the end.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anonymizer.keys import KeyRing
from dicom_rules import RuleSet
from gateway.core.jobs import InstanceSpec, ItemKind, JobResult, JobSpec, OutputLayout
from gateway.core.spool import atomic_write
from gateway.core.worker import init_worker, run_job

JOURNAL = ".anonymize-journal.jsonl"
SUMMARY = "anonymize-summary.json"
MAX_ATTEMPTS = 3  # a job that asked to retry or lost its worker runs again, then is quarantined
UNREADABLE = "unreadable"


@dataclass(frozen=True)
class FolderJob:
    key: str  # keyed hash of the inputs and the rules: names the job in the journal without PHI
    paths: tuple[str, ...]


@dataclass
class Tally:
    """Counts per outcome (ok, quarantine, drop, unreadable) and per quarantine reason; no PHI."""

    outcomes: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    resumed: int = 0

    def add(self, kind: str, reason: str = "") -> None:
        self.outcomes[kind] += 1
        if kind in (ItemKind.QUARANTINE, UNREADABLE):
            self.reasons[reason or kind] += 1

    def complete(self) -> bool:
        return not (self.outcomes[ItemKind.QUARANTINE] or self.outcomes[UNREADABLE])


@dataclass(frozen=True)
class BatchSettings:
    in_dir: Path
    out_dir: Path
    rules: RuleSet
    secret: bytes
    donor_bank: Path
    workers: int  # 0: run in this process


def dicom_files(folder: Path, exclude: Path | None = None) -> Iterator[Path]:
    """Files under ``folder`` in a stable order; hidden ones and the ``exclude`` folder (outputs) left out."""
    skip = exclude.resolve() if exclude is not None else None
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(root) / d).resolve() != skip)
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _study_of(path: Path) -> str | None:
    """StudyInstanceUID from the header (Pixel Data not read); "" when absent; None when unreadable."""
    from pydicom import dcmread

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
    except Exception:
        return None
    return str(ds.get("StudyInstanceUID", "") or "").strip()


def plan_jobs(settings: BatchSettings, keys: KeyRing, tally: Tally) -> list[FolderJob]:
    """One job per study (a file without StudyInstanceUID is its own job); unreadable files are counted."""
    studies: dict[str, list[str]] = defaultdict(list)
    for path in dicom_files(settings.in_dir, exclude=settings.out_dir):
        study = _study_of(path)
        if study is None:
            tally.add(UNREADABLE)
        else:
            studies[study or f"file:{path}"].append(str(path))
    return [FolderJob(_job_key(keys, settings.rules, paths), tuple(paths)) for paths in studies.values()]


def _job_key(keys: KeyRing, rules: RuleSet, paths: list[str]) -> str:
    stats = [os.stat(p) for p in paths]
    parts = [f"{p}\x1f{s.st_size}\x1f{s.st_mtime_ns}" for p, s in zip(paths, stats, strict=True)]
    return keys.short_hash("offline-job", rules.sha256 + "\x1e" + "\x1e".join(parts), 32)


Entry = tuple[str, str, str]  # (outcome kind, quarantine reason, output file name): codes and keyed UIDs only


def read_journal(out_dir: Path) -> dict[str, list[Entry]]:
    """Finished jobs of earlier runs: job key → an entry per instance. A torn last line is ignored."""
    done: dict[str, list[Entry]] = {}
    path = out_dir / JOURNAL
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            done[entry["job"]] = [(str(k), str(r), str(o)) for k, r, o in entry["items"]]
    return done


class Journal:
    """Appends a line per finished job, fsynced after its outputs were written (they are fsynced too)."""

    def __init__(self, out_dir: Path) -> None:
        self.fh = open(out_dir / JOURNAL, "a")  # noqa: SIM115 — closed by close()

    def record(self, job: FolderJob, items: list[Entry]) -> None:
        self.fh.write(json.dumps({"job": job.key, "items": items}) + "\n")
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.close()


class Runner:
    """Submits jobs to the pool (at most two per worker in flight, so memory stays bounded) and records."""

    def __init__(
        self, settings: BatchSettings, journal: Journal, tally: Tally, advance: Callable[[int], None]
    ) -> None:
        self.settings, self.journal, self.tally, self.advance = settings, journal, tally, advance
        self.pool: ProcessPoolExecutor | None = None
        self.in_flight: dict[Future[JobResult], tuple[FolderJob, int]] = {}

    def run(self, jobs: list[FolderJob]) -> None:
        if self.settings.workers <= 0:
            init_worker(self.settings.secret, str(self.settings.donor_bank))
        try:
            for job in jobs:
                while len(self.in_flight) >= 2 * max(1, self.settings.workers):
                    self._collect()
                self._submit(job, 1)
            while self.in_flight:
                self._collect()
        finally:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)

    def _spec(self, job: FolderJob) -> JobSpec:
        instances = tuple(InstanceSpec(i, p, "", "") for i, p in enumerate(job.paths))
        s = self.settings
        return JobSpec(0, instances, str(s.out_dir), s.rules, OutputLayout.BY_SOP_INSTANCE_UID)

    def _submit(self, job: FolderJob, attempt: int) -> None:
        future: Future[JobResult]
        if self.settings.workers <= 0:
            future = Future()
            try:
                future.set_result(run_job(self._spec(job)))
            except Exception as exc:
                future.set_exception(exc)
        else:
            future = self._pool().submit(run_job, self._spec(job))
        self.in_flight[future] = (job, attempt)

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["gateway.core.pipeline"])
            s = self.settings
            args = (s.secret, str(s.donor_bank), None, os.getpid())  # workers end with this process
            self.pool = ProcessPoolExecutor(s.workers, mp_context=ctx, initializer=init_worker, initargs=args)
        return self.pool

    def _collect(self) -> None:
        done, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
        for future in done:
            job, attempt = self.in_flight.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # a worker died (BrokenProcessPool) or the job raised
                if isinstance(exc, BrokenProcessPool) and self.pool is not None:
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    self.pool = None  # every job in flight fails with it: each is retried on a new pool
                self._again(job, attempt, f"worker-error:{type(exc).__name__}")
                continue
            if result.retry_reason:
                self._again(job, attempt, f"retry:{result.retry_reason}")
            else:
                self._finish(job, [(i.kind.value, i.reason, i.out_path) for i in result.items])

    def _again(self, job: FolderJob, attempt: int, reason: str) -> None:
        """Run a failed job again, or quarantine its instances after MAX_ATTEMPTS (as the scheduler does)."""
        if attempt < MAX_ATTEMPTS:
            self._submit(job, attempt + 1)
        else:
            self._finish(job, [(ItemKind.QUARANTINE.value, reason, "")] * len(job.paths))

    def _finish(self, job: FolderJob, items: list[Entry]) -> None:
        self.journal.record(job, items)
        for kind, reason, _ in items:
            self.tally.add(kind, reason)
        self.advance(len(job.paths))


def write_summary(out_dir: Path, tally: Tally, rules: RuleSet, workers: int, seconds: float) -> Path:
    summary: dict[str, Any] = {
        "inputs": sum(tally.outcomes.values()),
        "outcomes": {k: tally.outcomes[k] for k in ("ok", "quarantine", "drop", UNREADABLE)},
        "quarantine_reasons": dict(sorted(tally.reasons.items())),
        "resumed_from_earlier_run": tally.resumed,
        "rules": {"name": rules.name, "sha256": rules.sha256},
        "workers": workers,
        "seconds": round(seconds, 3),
    }
    path = out_dir / SUMMARY
    atomic_write(path, (json.dumps(summary, indent=2) + "\n").encode())
    return path


def resume(jobs: list[FolderJob], out_dir: Path, tally: Tally) -> list[FolderJob]:
    """Jobs an earlier run finished (with every output still there) are counted, not run again."""
    done = read_journal(out_dir)
    todo = []
    for job in jobs:
        items = done.get(job.key)
        if items is None or len(items) != len(job.paths) or not all(
            (out_dir / out).is_file() for kind, _, out in items if kind == ItemKind.OK
        ):
            todo.append(job)
            continue
        for kind, reason, _ in items:
            tally.add(kind, reason)
        tally.resumed += len(items)
    return todo
