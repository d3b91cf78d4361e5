"""Job messages between the scheduler (parent) and the pipeline workers: small, picklable, no datasets.

This module is light on purpose: the service process imports it without the pixel stage (torch); workers
import :mod:`gateway.pipeline` through :func:`run_job`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from dicom_rules import RuleSet


class ItemKind(StrEnum):
    OK = "ok"
    QUARANTINE = "quarantine"
    DROP = "drop"


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: int
    spool_file: str  # absolute path of the spooled file
    calling_ae: str
    calling_ip: str


@dataclass(frozen=True)
class JobSpec:
    job_id: int
    instances: tuple[InstanceSpec, ...]
    outbox_root: str
    rules: RuleSet


@dataclass(frozen=True)
class ItemResult:
    instance_id: int
    kind: ItemKind
    reason: str = ""
    destination: str = ""
    out_path: str = ""  # relative to the outbox root
    out_sop_uid: str = ""  # de-identified (keyed) UID: safe to log and store


@dataclass(frozen=True)
class JobResult:
    job_id: int
    items: tuple[ItemResult, ...] = ()
    retry_reason: str = ""  # non-empty: a stage asked to retry the whole job
    seconds: dict[str, float] = field(default_factory=dict)


def run_job(spec: JobSpec) -> JobResult:
    """Pool entry point: imports the pipeline (and the pixel stage) only inside the worker."""
    from gateway.pipeline import process_job

    return process_job(spec)


def init_worker(
    secret: bytes, donor_bank: str | None = None, log_level: str | None = None, main_pid: int | None = None
) -> None:
    """Pool initializer. With ``main_pid`` (a pool worker) the worker ends when that process ends."""
    if main_pid is not None:
        from gateway.lifeline import die_with_parent, exit_with

        die_with_parent()
        exit_with(main_pid)
    from gateway.pipeline import init_worker as init

    init(secret, donor_bank, log_level)


def warm_up() -> bool:
    """Import the pipeline in a fresh worker before the first job arrives."""
    import gateway.pipeline  # noqa: F401

    return True
