"""Work dispatch on Procrastinate (its queue lives in the ledger's PostgreSQL): defer, reconcile, sweep.

The ledger stays the source of truth; the queue only carries job ids. Each coordinator tick (any node may run
it; every step is idempotent under concurrency):

1. group received instances (the ledger serialises this with an advisory lock);
2. *reconcile*: every ready job without a queued or running queue entry is deferred, with the queueing lock
   ``vera-job-<id>`` so a job is never queued twice (a queue that lost entries is refilled here);
3. *sweep*: queue entries whose worker stopped heart-beating for ``stall_after_s`` are stalled: their ledger
   run is retried (attempt + 1 at the next start) or, after ``max_job_attempts``, quarantined with a reason.
   The stale worker, if it was only frozen, finds its run fenced off and its results are discarded.
"""

from __future__ import annotations

import datetime
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.core.config import GatewayConfig
from gateway.core.ledger.models import JobState, LedgerError
from gateway.core.ledger.postgres import PostgresLedger

LOG = structlog.get_logger("gateway.cluster.queue")
TASK_NAME = "vera.run_job"
WORKER_LOST = "worker-lost"


def lock_of(job_id: int) -> str:
    return f"vera-job-{job_id}"


def build_app(config: GatewayConfig, run_job: Callable[[int], None] | None = None, sync: bool = False) -> Any:
    """A Procrastinate app on the ledger's database with the job task registered (``run_job`` runs it; a
    deferring-only app passes None). ``sync``: a synchronous connector for deferring from threads."""
    import procrastinate

    kwargs = {"conninfo": config.ledger, "kwargs": {"connect_timeout": 5}}
    connector = (
        procrastinate.SyncPsycopgConnector(**kwargs) if sync else procrastinate.PsycopgConnector(**kwargs)
    )
    app = procrastinate.App(connector=connector)

    def run_study_job(job_id: int) -> None:
        if run_job is None:
            raise RuntimeError("this process only defers jobs")
        run_job(job_id)

    app.task(name=TASK_NAME, queue=config.work_queue, pass_context=False)(run_study_job)
    return app


class Coordinator:
    """Grouping, reconciling and the stalled-job sweep for a cluster (see the module docstring)."""

    def __init__(self, config: GatewayConfig, ledger: PostgresLedger) -> None:
        self.config = config
        self.ledger = ledger
        self.app = build_app(config, sync=True)
        self.app.open()

    def tick(self) -> dict[str, int]:
        grouped = self.ledger.group_received()
        deferred = self.reconcile()
        swept = self.sweep() + self.sweep_orphaned_runs()
        return {"grouped": len(grouped), "deferred": deferred, "swept": swept}

    def queued_job_ids(self) -> set[int]:
        rows = self.ledger.query(
            "SELECT (args->>'job_id')::bigint AS job_id FROM procrastinate_jobs"
            " WHERE task_name=%s AND status IN ('todo', 'doing')",
            (TASK_NAME,),
        )
        return {int(r["job_id"]) for r in rows}

    def reconcile(self) -> int:
        from procrastinate.exceptions import AlreadyEnqueued

        ready = self.ledger.ready_jobs(self.config.quiet_period_s, self.config.max_wait_s, limit=500)
        queued = self.queued_job_ids()
        task = self.app.tasks[TASK_NAME]
        deferred = 0
        for job in ready:
            if job.id in queued:
                continue
            try:
                task.configure(queueing_lock=lock_of(job.id), queue=self.config.work_queue).defer(
                    job_id=job.id
                )
            except AlreadyEnqueued:
                continue
            deferred += 1
            LOG.info("job.deferred", job_id=job.id, attempts=job.attempts, queue=self.config.work_queue)
        return deferred

    def sweep(self) -> int:
        """Procrastinate's own stalled-jobs and retry queries, run on the ledger's connection pool (its job
        manager offers them only as coroutines; this coordinator is a plain thread)."""
        from procrastinate import sql

        stalled = self.ledger.query(
            sql.queries["select_stalled_jobs_by_heartbeat"],
            {"queue": None, "task_name": TASK_NAME, "seconds_since_heartbeat": self.config.stall_after_s},
        )
        for entry in stalled:
            self._settle_stalled(entry)
            self._requeue(entry["id"])
        return len(stalled)

    def _requeue(self, entry_id: int) -> None:
        """The queue entry runs again at once: it starts the retried run, or finds nothing to do."""
        from procrastinate import sql

        now = datetime.datetime.now(datetime.UTC)
        args = {"job_id": entry_id, "retry_at": now, "new_priority": None, "new_queue_name": None,
                "new_lock": None}  # fmt: skip
        try:
            self.ledger.query(sql.queries["retry_job"], args)
        except LedgerError:  # another coordinator's sweep requeued it a moment ago
            LOG.info("job.requeue_skipped", entry_id=entry_id)

    def sweep_orphaned_runs(self) -> int:
        """Runs ``processing`` in the ledger with no queue entry todo or doing: the worker could not record
        its end (the database went away for longer than it retried) and Procrastinate closed the entry. They
        are retried (or quarantined) like a lost worker's; a run still in progress always has its entry."""
        rows = self.ledger.query(
            "SELECT id FROM jobs WHERE state=%s AND updated_at < %s AND id NOT IN ("
            " SELECT (args->>'job_id')::bigint FROM procrastinate_jobs"
            " WHERE task_name=%s AND status IN ('todo', 'doing'))",
            (JobState.PROCESSING, time.time() - self.config.stall_after_s, TASK_NAME),
        )
        for row in rows:
            self._settle_run(int(row["id"]))
        return len(rows)

    def _settle_stalled(self, entry: dict[str, Any]) -> None:
        self._settle_run(int(entry["args"]["job_id"]))

    def _settle_run(self, job_id: int) -> None:
        run = self.ledger.running_job(job_id)
        if run is None:
            return
        if run.attempt >= self.config.max_job_attempts:
            count = self.ledger.quarantine_job(run, f"{WORKER_LOST}:attempts={run.attempt}")
            LOG.warning(
                "job.quarantined", job_id=job_id, reason=WORKER_LOST, attempts=run.attempt, instances=count
            )
        elif self.ledger.retry_job(run, WORKER_LOST, 0.0):
            LOG.warning("job.worker_lost", job_id=job_id, attempt=run.attempt)

    def run(self, stop: threading.Event, interval_s: float = 0.5) -> None:
        while not stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # database restarting: the next tick reconnects
                LOG.warning("coordinator.tick_failed", error=type(exc).__name__)
            stop.wait(interval_s)

    def close(self) -> None:
        self.app.close()
