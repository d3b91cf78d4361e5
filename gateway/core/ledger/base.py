"""The ledger interface every backend implements (SQLite today; PostgreSQL for a cluster).

One method per state transition. Each transition is a *fenced* update: it applies only when the row is
still in the state (and, for jobs and forward attempts, at the attempt number) the caller saw, and it says
whether it applied, so two nodes acting on the same row cannot both win. A transition is one transaction;
batch transitions (:meth:`finish_job`, :meth:`record_forwarding`) commit all their rows at once.
Backends raise :class:`LedgerError` when their storage fails. Time comes from the injected ``clock``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from gateway.core.ledger.models import (
    ForwardOutcome,
    ForwardRecorded,
    Grouped,
    InstanceOutcome,
    InstanceRecord,
    InstanceState,
    Job,
    JobRecord,
    JobRun,
    JobState,
    LedgerCounts,
    OutputItem,
    PurgedFiles,
    QuarantineItem,
    ReceivedInstance,
    ReceiveResult,
    Recovery,
    StudySummary,
)


class Ledger(ABC):
    # ---- receive -------------------------------------------------------------------------------------
    @abstractmethod
    def record_received(self, item: ReceivedInstance) -> ReceiveResult:
        """Record a spooled instance. Same SOP + bytes: idempotent (nothing new); same SOP, other bytes:
        a new row flagged ``duplicate_of`` the first."""

    def record_received_many(self, items: Sequence[ReceivedInstance]) -> list[ReceiveResult]:
        """:meth:`record_received` for several instances (a group commit); a backend may commit them in one
        transaction, all or none. This default commits each on its own."""
        return [self.record_received(item) for item in items]

    @abstractmethod
    def quarantine_received(self, reason: str, blob_path: str | None, calling_ae: str) -> int:
        """A dataset rejected at receive time (no instance row); returns the quarantine id."""

    @abstractmethod
    def record_recovered(self, item: ReceivedInstance, reason: str) -> int | None:
        """Start-up recovery: a spooled instance whose row was lost gets it back, quarantined with
        ``reason`` (an instance quarantine item, replayable); one transaction. Returns the quarantine id,
        None when that SOP with the same bytes is already recorded."""

    # ---- grouping and jobs ---------------------------------------------------------------------------
    @abstractmethod
    def group_received(self) -> list[Grouped]:
        """Attach every received instance to the collecting job of its study (a new job, or a follow-up
        of the study's last job when that one already started)."""

    @abstractmethod
    def ready_jobs(self, quiet_s: float, max_wait_s: float, limit: int = 100) -> list[Job]:
        """Collecting jobs whose study was quiet ``quiet_s`` (or that waited ``max_wait_s``), and retries
        that are due, oldest first."""

    @abstractmethod
    def start_job(self, job: Job) -> JobRun | None:
        """grouped/retry_waiting → processing, attempt + 1, with its unfinished instances. None when the
        fence failed (another scheduler started it, or it moved on since ``ready_jobs``)."""

    @abstractmethod
    def finish_job(self, run: JobRun, outcomes: Sequence[InstanceOutcome]) -> JobState | None:
        """Record every instance outcome of a run in one transaction (a quarantined one also gets a
        quarantine record) and settle the job; None when the run is stale (fence failed)."""

    @abstractmethod
    def retry_job(self, run: JobRun, reason: str, delay_s: float) -> bool:
        """A stage asked to retry: the job waits ``delay_s``, its instances go back to grouped."""

    @abstractmethod
    def quarantine_job(self, run: JobRun, reason: str) -> int | None:
        """A job kept failing: quarantine its unfinished instances; returns how many (None: stale run)."""

    # ---- forwarding ----------------------------------------------------------------------------------
    @abstractmethod
    def due_outputs(self, limit: int = 500, exclude: Sequence[str] = ()) -> list[OutputItem]:
        """Outputs to send now, oldest first; ``exclude`` skips destinations whose breaker is open."""

    @abstractmethod
    def record_forwarding(self, outcomes: Sequence[ForwardOutcome]) -> list[ForwardRecorded]:
        """A forwarder tick's outcomes in one transaction: forwarded; retry (attempts + 1, next attempt
        after ``delay_s``); gave up (quarantined, replayable). Each is fenced on the item's state and
        attempts; returns those that applied and settles their jobs."""

    # ---- maintenance ---------------------------------------------------------------------------------
    @abstractmethod
    def recover(self) -> Recovery:
        """After a crash: processing jobs and instances go back to grouped (they run again)."""

    @abstractmethod
    def purge_finished(self, before: float, limit: int = 1000) -> list[PurgedFiles]:
        """Forget the files of instances forwarded or dropped before ``before``; the caller deletes them.
        Rows stay (audit, duplicates); quarantined instances never purge."""

    @abstractmethod
    def spool_paths(self) -> set[str]:
        """Spool files some instance still refers to."""

    @abstractmethod
    def spool_path_in_use(self, relpath: str) -> bool: ...

    @abstractmethod
    def release_quarantine(self, item_id: int) -> InstanceState:
        """Replay: a pipeline quarantine is received again (a follow-up job); a forward give-up is
        forwarded again. Raises LookupError when the item is unknown, released or not replayable."""

    # ---- reads ---------------------------------------------------------------------------------------
    @abstractmethod
    def counts(self) -> LedgerCounts:
        """Per state: how many instances/jobs, and the oldest ``updated_at``."""

    @abstractmethod
    def quarantine_items(self, include_released: bool = False) -> list[QuarantineItem]: ...

    @abstractmethod
    def quarantine_item(self, item_id: int) -> QuarantineItem | None: ...

    @abstractmethod
    def instance(self, instance_id: int) -> InstanceRecord | None: ...

    @abstractmethod
    def instances(
        self, state: InstanceState | None = None, study_key: str | None = None, limit: int = 10_000
    ) -> list[InstanceRecord]:
        """Instances by id (filtered by state and/or study)."""

    @abstractmethod
    def jobs(self, study_key: str | None = None, limit: int = 10_000) -> list[JobRecord]: ...

    @abstractmethod
    def studies(self, limit: int = 100, offset: int = 0) -> list[StudySummary]:
        """Studies, most recently active first, with per-state instance counts."""

    @abstractmethod
    def close(self) -> None:
        """Release this thread's connection (others keep theirs)."""
