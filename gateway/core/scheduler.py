"""Study grouping and job dispatch: the scheduler between the ledger and the worker pool.

Each tick: received instances join the collecting job of their study (a late instance opens a follow-up
job for the same study); jobs whose study was quiet for ``quiet_period_s`` (or that waited ``max_wait_s``)
start and go to the process pool; finished jobs are recorded in the ledger in one transaction each.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import structlog

from dicom_rules import RuleSet
from gateway.core.config import GatewayConfig
from gateway.core.jobs import (
    InstanceSpec,
    ItemKind,
    ItemResult,
    JobResult,
    JobSpec,
)
from gateway.core.ledger import (
    Deidentified,
    Dropped,
    InstanceOutcome,
    Job,
    JobRun,
    Ledger,
    Quarantined,
)
from gateway.core.ledger.admin import AdminLedger
from gateway.core.worker import init_worker, run_job, warm_up
from gateway.ops.logs import uid_hash
from gateway.ops.metrics import QUARANTINED, STAGE_SECONDS

LOG = structlog.get_logger("gateway.grouping")
MAX_JOB_ATTEMPTS = 3


def job_retry_delay(attempts: int) -> float:
    return float(min(300, 5 * 2 ** max(0, attempts - 1)))


def outcome_of(item: ItemResult) -> InstanceOutcome:
    """The ledger outcome of one pipeline item."""
    if item.kind is ItemKind.OK:
        return Deidentified(item.instance_id, item.destination, item.out_path, item.out_sop_uid)
    if item.kind is ItemKind.DROP:
        return Dropped(item.instance_id, item.reason)
    return Quarantined(item.instance_id, item.reason)


class Scheduler:
    """Owns the worker pool. ``rules`` is a callable so a hot-reloaded rule set applies to the next job."""

    def __init__(
        self, config: GatewayConfig, ledger: Ledger, rules: Callable[[], RuleSet], secret: bytes
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.rules = rules
        self.secret = secret
        self.in_flight: dict[int, tuple[Future[JobResult], float, JobRun]] = {}
        self.pool: ProcessPoolExecutor | None = None
        self.timeout = config.job_timeout_s
        self.init_args = (secret, str(config.donor_bank_path))
        self._inline_ready = False  # workers=0: the pipeline is set up in-process at the first job
        self.details = AdminLedger(ledger)  # the trail's route / plan / verification per instance
        self.suspects: set[int] = set()  # jobs whose worker died while others ran too: they next run alone

    def _pool(self) -> ProcessPoolExecutor:
        if self.pool is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["gateway.core.pipeline"])
            self.pool = ProcessPoolExecutor(
                self.config.workers,
                mp_context=ctx,
                initializer=init_worker,
                initargs=(*self.init_args, "INFO", os.getpid()),  # workers end with this process
            )
        return self.pool

    def warm_up(self) -> None:
        """Start the worker processes now (they import the pixel stage), not on the first job."""
        if self.config.workers > 0:
            for _ in range(self.config.workers):
                self._pool().submit(warm_up)

    def tick(self) -> int:
        """One round of grouping, dispatch and collection; returns how many jobs finished."""
        for grouped in self.ledger.group_received():
            LOG.info("instance.grouped", instance_id=grouped.instance_id, job_id=grouped.job_id)
        capacity = max(1, self.config.workers * 2) - len(self.in_flight)
        if capacity > 0:
            ready = self.ledger.ready_jobs(self.config.quiet_period_s, self.config.max_wait_s, capacity)
            for job in self._dispatchable([j for j in ready if j.id not in self.in_flight]):
                self._dispatch(job)
        self._expire_stuck_jobs()
        return self._collect()

    def _dispatchable(self, ready: list[Job]) -> list[Job]:
        """A crashed worker fails every job in the pool; a suspect job then runs alone, so the next crash is
        charged (and after MAX_JOB_ATTEMPTS quarantined) to the job that causes it, not to its neighbours."""
        if any(job_id in self.suspects for job_id in self.in_flight):
            return []
        suspect = next((j for j in ready if j.id in self.suspects), None)
        if suspect is None:
            return ready
        return [] if self.in_flight else [suspect]

    def _dispatch(self, job: Job) -> None:
        run = self.ledger.start_job(job)
        if run is None:  # started elsewhere or moved on since ready_jobs: nothing to do
            LOG.info("job.not_started", job_id=job.id)
            return
        LOG.info(
            "job.processing",
            job_id=job.id,
            patient=job.patient_key,
            instances=len(run.instances),
            follow_up_of=job.follow_up_of,
            attempt=run.attempt,
        )
        spool_root = self.config.spool_dir
        spec = JobSpec(
            job_id=job.id,
            instances=tuple(
                InstanceSpec(i.id, str(spool_root / i.spool_path), i.calling_ae, i.calling_ip)
                for i in run.instances
            ),
            outbox_root=str(self.config.outbox_dir),
            rules=self.rules(),
        )
        self.in_flight[job.id] = (self._submit(spec), time.perf_counter(), run)

    def _submit(self, spec: JobSpec) -> Future[JobResult]:
        """Run in the pool (or inline with workers=0); a failure to submit becomes a failed future."""
        future: Future[JobResult] = Future()
        try:
            if self.config.workers > 0:
                return self._pool().submit(run_job, spec)
            if not self._inline_ready:
                init_worker(*self.init_args)
                self._inline_ready = True
            future.set_result(run_job(spec))
        except Exception as exc:
            if isinstance(exc, BrokenProcessPool):
                self._reset_pool()
            future.set_exception(exc)
        return future

    def _expire_stuck_jobs(self) -> None:
        """A job running longer than ``job_timeout_s`` means a hung worker: stop the workers; every job in
        flight then fails with BrokenProcessPool and is retried (or quarantined after repeated failures)."""
        now = time.perf_counter()
        stuck = [
            jid for jid, (fut, t0, _) in self.in_flight.items() if not fut.done() and now - t0 > self.timeout
        ]
        if stuck and self.pool is not None:
            LOG.error("job.timeout", job_ids=stuck, timeout_s=self.timeout)
            for proc in list(getattr(self.pool, "_processes", {}).values()):  # no public API to stop a worker
                proc.terminate()

    def _collect(self) -> int:
        done = [jid for jid, (fut, _, _) in self.in_flight.items() if fut.done()]
        for job_id in done:
            future, started, run = self.in_flight.pop(job_id)
            STAGE_SECONDS.labels(stage="job").observe(time.perf_counter() - started)
            try:
                self._record(run, future.result())
                self.suspects.discard(job_id)
            except Exception as exc:
                if isinstance(exc, BrokenProcessPool):
                    self._reset_pool()
                    self.suspects.add(job_id)
                self._job_failed(run, f"worker-error:{type(exc).__name__}")
        return len(done)

    def _record(self, run: JobRun, result: JobResult) -> None:
        for stage, seconds in result.seconds.items():
            STAGE_SECONDS.labels(stage=stage).observe(seconds)
        if result.retry_reason:
            self._job_failed(run, result.retry_reason)
            return
        state = self.ledger.finish_job(run, [outcome_of(i) for i in result.items])
        if state is None:  # the run was fenced off (requeued or taken over): its outputs are not recorded
            LOG.warning("job.result_stale", job_id=run.job_id, attempt=run.attempt)
            return
        self._record_details(result)
        for item in result.items:
            if item.kind is ItemKind.QUARANTINE:
                QUARANTINED.labels(stage="pipeline").inc()
                LOG.warning(
                    "instance.quarantined",
                    instance_id=item.instance_id,
                    job_id=result.job_id,
                    reason=item.reason,
                )
            elif item.kind is ItemKind.OK:
                LOG.info(
                    "instance.deidentified",
                    instance_id=item.instance_id,
                    job_id=result.job_id,
                    out_uid_hash=uid_hash(item.out_sop_uid),
                    destination=item.destination,
                )
            else:
                LOG.info("instance.dropped", instance_id=item.instance_id, reason=item.reason)
        LOG.info("job.finished", job_id=result.job_id, state=state, instances=len(result.items))

    def _record_details(self, result: JobResult) -> None:
        """An observer: the states are committed already, so a failure here costs the trail detail only."""
        rows = [
            (i.instance_id, result.job_id, str(i.detail.get("route", "")), i.detail) for i in result.items
        ]
        try:
            self.details.record_details([r for r in rows if r[3]])
        except Exception:
            LOG.exception("job.details_not_recorded", job_id=result.job_id)

    def _job_failed(self, run: JobRun, reason: str) -> None:
        job_id, attempts = run.job_id, run.attempt
        if attempts >= MAX_JOB_ATTEMPTS:
            count = self.ledger.quarantine_job(run, reason)
            self.suspects.discard(job_id)
            if count is not None:
                QUARANTINED.labels(stage="pipeline").inc(count)
                LOG.warning("job.quarantined", job_id=job_id, reason=reason, attempts=attempts)
            return
        delay = job_retry_delay(attempts)
        if self.ledger.retry_job(run, reason, delay):
            LOG.warning("job.retry_waiting", job_id=job_id, reason=reason, attempts=attempts, delay_s=delay)

    def _reset_pool(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception:
                LOG.exception("scheduler.tick_failed")
            stop.wait(self.config.poll_interval_s)

    def shutdown(self) -> None:
        """Stop the workers without waiting for running jobs: the ledger requeues them at the next start."""
        if self.pool is not None:
            processes = list(getattr(self.pool, "_processes", {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:
                proc.terminate()
            for proc in processes:
                proc.join(timeout=5)
            self.pool = None
