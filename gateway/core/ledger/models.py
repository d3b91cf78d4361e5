"""What goes in and out of the ledger: state enums and frozen records, no SQL.

Instance states: received → grouped → processing → deidentified → forwarded, plus quarantined(reason),
retry_waiting (forward failed, next attempt scheduled) and dropped (a rule said drop).
Job states: grouped (collecting instances) → processing → deidentified → forwarded, plus quarantined and
retry_waiting (a stage asked to retry). Only keyed hashes and pseudonyms are stored, never original UIDs or
patient identifiers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class InstanceState(StrEnum):
    RECEIVED = "received"
    GROUPED = "grouped"
    PROCESSING = "processing"
    DEIDENTIFIED = "deidentified"
    FORWARDED = "forwarded"
    QUARANTINED = "quarantined"
    RETRY_WAITING = "retry_waiting"
    DROPPED = "dropped"


class JobState(StrEnum):
    GROUPED = "grouped"
    PROCESSING = "processing"
    DEIDENTIFIED = "deidentified"
    FORWARDED = "forwarded"
    QUARANTINED = "quarantined"
    RETRY_WAITING = "retry_waiting"


class Duplicate(StrEnum):
    NO = "no"
    SAME_BYTES = "same-bytes"  # idempotent: nothing new recorded
    DIFFERENT_BYTES = "different-bytes"  # kept, flagged with duplicate_of


class QuarantineKind(StrEnum):
    RECEIVE = "receive"  # rejected at receive time: no instance row, the blob is kept
    INSTANCE = "instance"  # a pipeline stage quarantined one instance
    JOB = "job"  # a job kept failing: its unfinished instances
    FORWARD = "forward"  # forwarding gave up (replay re-forwards)


UNFINISHED = (InstanceState.RECEIVED, InstanceState.GROUPED, InstanceState.PROCESSING)
FORWARDABLE = (InstanceState.DEIDENTIFIED, InstanceState.RETRY_WAITING)
STARTABLE_JOBS = (JobState.GROUPED, JobState.RETRY_WAITING)


class LedgerError(Exception):
    """The ledger's storage failed (disk full, locked, connection lost): the caller answers 'out of
    resources' or retries later. Backends raise it ``from`` their driver's error."""


def settled_job_state(states: Iterable[str], current: JobState) -> JobState:
    """A job's state from its instances' states: unchanged while any instance is unfinished."""
    present = set(states)
    if present & set(UNFINISHED):
        return current
    if present & set(FORWARDABLE):
        return JobState.DEIDENTIFIED
    if InstanceState.FORWARDED in present:
        return JobState.FORWARDED
    return JobState.QUARANTINED if InstanceState.QUARANTINED in present else JobState.FORWARDED


# ---- receive -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReceivedInstance:
    """What the SCP learned about one stored instance (keys are keyed hashes / pseudonyms)."""

    sop_key: str
    study_key: str
    patient_key: str  # a plain value: how it is computed is the intake's business
    sop_class_uid: str
    transfer_syntax: str
    sha256: str
    spool_path: str
    size: int
    calling_ae: str
    calling_ip: str


@dataclass(frozen=True)
class ReceiveResult:
    instance_id: int
    duplicate: Duplicate


# ---- grouping and jobs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grouped:
    instance_id: int
    job_id: int


@dataclass(frozen=True)
class Job:
    """A job ready to start; ``attempts`` is the fence :meth:`Ledger.start_job` checks."""

    id: int
    study_key: str
    patient_key: str
    state: JobState
    follow_up_of: int | None
    attempts: int


@dataclass(frozen=True)
class JobInstance:
    id: int
    spool_path: str  # relative to the spool root
    calling_ae: str
    calling_ip: str


@dataclass(frozen=True)
class JobRun:
    """A started job: its attempt number fences every later transition of this run."""

    job_id: int
    attempt: int
    instances: tuple[JobInstance, ...]


@dataclass(frozen=True)
class Deidentified:
    instance_id: int
    destination: str
    out_path: str  # relative to the outbox root
    out_sop_uid: str


@dataclass(frozen=True)
class Dropped:
    instance_id: int
    reason: str


@dataclass(frozen=True)
class Quarantined:
    instance_id: int
    reason: str


InstanceOutcome = Deidentified | Dropped | Quarantined


# ---- forwarding ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutputItem:
    """A de-identified instance waiting to be forwarded; ``attempts`` fences its forward outcome."""

    instance_id: int
    job_id: int
    destination: str
    out_path: str
    out_sop_uid: str
    attempts: int
    first_failure_at: float | None


@dataclass(frozen=True)
class Forwarded:
    item: OutputItem


@dataclass(frozen=True)
class ForwardRetry:
    item: OutputItem
    reason: str
    delay_s: float


@dataclass(frozen=True)
class ForwardGaveUp:
    item: OutputItem
    reason: str


ForwardOutcome = Forwarded | ForwardRetry | ForwardGaveUp


@dataclass(frozen=True)
class ForwardRecorded:
    """An outcome that applied (its fence held); ``quarantine_id`` for a give-up."""

    instance_id: int
    quarantine_id: int | None = None


# ---- maintenance ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recovery:
    jobs_requeued: int
    instances_requeued: int


@dataclass(frozen=True)
class PurgedFiles:
    """Files the caller deletes: ``out_path`` is empty when another instance still needs that output."""

    spool_path: str
    out_path: str


# ---- reads (CLI status/quarantine, web console) ---------------------------------------------------------
@dataclass(frozen=True)
class StateCount:
    count: int
    oldest_updated_at: float | None


@dataclass(frozen=True)
class LedgerCounts:
    instances: dict[InstanceState, StateCount] = field(default_factory=dict)
    jobs: dict[JobState, StateCount] = field(default_factory=dict)


@dataclass(frozen=True)
class QuarantineItem:
    id: int
    kind: QuarantineKind
    instance_id: int | None
    job_id: int | None
    reason: str
    blob_path: str | None
    calling_ae: str
    created_at: float
    released_at: float | None


@dataclass(frozen=True)
class InstanceRecord:
    id: int
    sop_key: str
    study_key: str
    patient_key: str
    sop_class_uid: str
    transfer_syntax: str
    sha256: str
    size: int
    calling_ae: str
    calling_ip: str
    state: InstanceState
    reason: str
    job_id: int | None
    duplicate_of: int | None
    received_at: float
    updated_at: float
    destination: str | None
    out_sop_uid: str | None
    attempts: int
    next_attempt_at: float | None
    first_failure_at: float | None
    forwarded_at: float | None


@dataclass(frozen=True)
class JobRecord:
    id: int
    study_key: str
    patient_key: str
    state: JobState
    reason: str
    follow_up_of: int | None
    attempts: int
    first_at: float
    last_at: float
    next_attempt_at: float | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class StudySummary:
    study_key: str
    patient_key: str
    instances: int
    jobs: int
    first_received_at: float
    last_updated_at: float
    states: dict[InstanceState, int]
