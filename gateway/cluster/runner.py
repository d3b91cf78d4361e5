"""`vera-gateway worker`: one Procrastinate worker process running study jobs from the ledger.

A queue entry names a job id. The runner starts the job's next attempt in the ledger (fenced: only one node
can), fetches its spooled instances from the shared store into a local cache, runs the same per-job pipeline
as the single-machine pool, uploads the outputs (content-addressed, so a rerun writes the same keys) and
commits the results fenced by attempt number. A crash anywhere leaves the run ``processing``; the
coordinator's sweep sees the silent worker and retries or quarantines the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from dicom_rules import RuleSet
from gateway.core import faults
from gateway.core.config import GatewayConfig
from gateway.core.jobs import InstanceSpec, ItemKind, JobResult, JobSpec
from gateway.core.ledger.models import JobRun, LedgerError
from gateway.core.ledger.postgres import PostgresLedger
from gateway.core.scheduler import job_retry_delay, outcome_of  # the same rules as on one node
from gateway.core.spool import ContentStore, atomic_write
from gateway.ops.metrics import QUARANTINED, STAGE_SECONDS

LOG = structlog.get_logger("gateway.cluster.runner")
T = TypeVar("T")


class JobRunner:
    """Runs jobs in this process (the pipeline is set up once, by :meth:`prepare`)."""

    def __init__(
        self,
        config: GatewayConfig,
        ledger: PostgresLedger,
        spool: Any,
        outbox: Any,
        rules: Callable[[], RuleSet],
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.spool = spool
        self.outbox = outbox
        self.rules = rules
        self.cache = config.data_dir / "cache"

    def prepare(self, secret: bytes) -> None:
        from gateway.core.pipeline import init_worker

        init_worker(secret, str(self.config.donor_bank_path))

    def run(self, job_id: int) -> None:
        job = self.ledger.startable_job(job_id)
        run = self.ledger.start_job(job) if job is not None else None
        if run is None:
            LOG.info("job.nothing_to_do", job_id=job_id)  # another worker has it, or it is finished
            return
        LOG.info("job.processing", job_id=job_id, attempt=run.attempt, instances=len(run.instances))
        started = time.perf_counter()
        try:
            result = self._process(run)
        except Exception as exc:  # storage down, pipeline bug: the job is retried, never lost
            LOG.exception("job.failed", job_id=job_id, attempt=run.attempt)
            self._failed(run, f"worker-error:{type(exc).__name__}")
            return
        if result.retry_reason:
            self._failed(run, result.retry_reason)
            return
        state = self._durably(self.ledger.finish_job, run, [outcome_of(i) for i in result.items])
        self._observe(result, time.perf_counter() - started, recorded=state is not None)
        if state is None:
            LOG.warning("job.result_fenced", job_id=job_id, attempt=run.attempt)  # a newer attempt owns it
            return
        LOG.info(
            "job.finished",
            job_id=job_id,
            attempt=run.attempt,
            state=str(state),
            instances=len(result.items),
            seconds=round(time.perf_counter() - started, 3),
        )

    def _durably(self, transition: Callable[..., T], *args: Any) -> T:
        """A fenced transition, retried while the database is away (a restart, a fail-over): a retry after a
        commit whose answer was lost is refused by the fence, never applied twice."""
        deadline = time.monotonic() + self.config.stall_after_s
        while True:
            try:
                return transition(*args)
            except LedgerError as exc:
                if time.monotonic() > deadline:
                    raise  # the coordinator's orphaned-run sweep takes the run over
                LOG.warning("job.commit_retry", error=type(exc).__name__)  # driver text can quote row values
                time.sleep(1.0)

    @staticmethod
    def _observe(result: JobResult, seconds: float, recorded: bool) -> None:
        """This worker's /metrics: stage and job durations; quarantines only when the commit held."""
        for stage, spent in result.seconds.items():
            STAGE_SECONDS.labels(stage=stage).observe(spent)
        STAGE_SECONDS.labels(stage="job").observe(seconds)
        if recorded:
            quarantined = sum(1 for i in result.items if i.kind is ItemKind.QUARANTINE)
            QUARANTINED.labels(stage="pipeline").inc(quarantined)

    def _process(self, run: JobRun) -> JobResult:
        from gateway.core.pipeline import process_job

        local_outbox = isinstance(self.outbox, ContentStore)
        work = Path(tempfile.mkdtemp(prefix=f"job{run.job_id}-", dir=self._ensure_cache()))
        try:
            spec = JobSpec(
                job_id=run.job_id,
                instances=tuple(
                    InstanceSpec(i.id, str(self._local_spool_file(i.spool_path)), i.calling_ae, i.calling_ip)
                    for i in run.instances
                ),
                outbox_root=str(self.outbox.root if local_outbox else work / "outbox"),
                rules=self.rules(),  # hot-reloaded: an edit applies to the next job
            )
            faults.hold("cluster.before_pipeline")
            result = process_job(spec)
            if not local_outbox:
                self._upload(result, work / "outbox")
            return result
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _ensure_cache(self) -> Path:
        self.cache.mkdir(parents=True, exist_ok=True)
        return self.cache

    def _local_spool_file(self, relpath: str) -> Path:
        if isinstance(self.spool, ContentStore):
            return self.spool.path(relpath)
        local = self.cache / "spool" / relpath  # content-addressed: a cached copy is always current
        if not local.exists():
            atomic_write(local, self.spool.read(relpath))
        return local

    def _upload(self, result: JobResult, outbox_dir: Path) -> None:
        for item in result.items:
            if item.kind is ItemKind.OK:
                stored = self.outbox.put((outbox_dir / item.out_path).read_bytes())
                assert stored.relpath == item.out_path, "outbox keys are content-addressed in both stores"

    def _failed(self, run: JobRun, reason: str) -> None:
        if run.attempt >= self.config.max_job_attempts:
            count = self._durably(self.ledger.quarantine_job, run, reason)
            QUARANTINED.labels(stage="pipeline").inc(count or 0)
            LOG.warning(
                "job.quarantined", job_id=run.job_id, reason=reason, attempts=run.attempt, count=count
            )
            return
        delay = job_retry_delay(run.attempt)
        if self._durably(self.ledger.retry_job, run, reason, delay):
            LOG.warning("job.retry_waiting", job_id=run.job_id, reason=reason, delay_s=delay)


def run_worker(
    config: GatewayConfig,
    runner: JobRunner,
    concurrency: int = 1,
    stop: threading.Event | None = None,
) -> None:
    """Run the Procrastinate worker until stopped: by SIGTERM/SIGINT in a worker process, or by ``stop`` when
    it runs in a thread of a node (``serve --role all``). A worker whose database connection dropped ends;
    it is started again here, so the process rides out a database restart."""
    while stop is None or not stop.is_set():
        try:
            asyncio.run(_work(config, runner, concurrency, stop))
            return  # stopped
        except Exception as exc:
            LOG.warning("worker.restarting", error=type(exc).__name__)
            time.sleep(1.0)


async def _work(
    config: GatewayConfig, runner: JobRunner, concurrency: int, stop: threading.Event | None
) -> None:
    from gateway.cluster.queue import build_app

    app = build_app(config, runner.run)
    async with app.open_async():
        worker = asyncio.create_task(
            app.run_worker_async(
                queues=[config.work_queue],
                concurrency=concurrency,
                update_heartbeat_interval=config.worker_heartbeat_s,
                stalled_worker_timeout=config.stall_after_s,
                delete_jobs="successful",
                install_signal_handlers=stop is None,
            )
        )
        while stop is not None and not worker.done():
            if await asyncio.to_thread(stop.wait, 0.5):
                worker.cancel()  # Procrastinate stops gracefully: the running job finishes first
        with contextlib.suppress(asyncio.CancelledError):
            await worker
