"""Job messages between the scheduler (parent) and the pipeline workers: small, picklable, no datasets.

This module is light on purpose: the service process imports it without the pixel stage (torch); the pool's
entry points in :mod:`gateway.core.worker` import :mod:`gateway.core.pipeline` inside the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the admin commands import this module without dicom_rules (pydicom)
    from dicom_rules import RuleSet


class OutputLayout(StrEnum):
    """Where the write stage puts an output: the service's content-addressed outbox (``ab/<sha256>.dcm``),
    or ``<de-identified SOP Instance UID>.dcm`` in one folder (``vera-gateway anonymize``)."""

    CONTENT_ADDRESSED = "content-addressed"
    BY_SOP_INSTANCE_UID = "by-sop-instance-uid"


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
    layout: OutputLayout = OutputLayout.CONTENT_ADDRESSED


@dataclass(frozen=True)
class ItemResult:
    instance_id: int
    kind: ItemKind
    reason: str = ""
    destination: str = ""
    out_path: str = ""  # relative to the outbox root
    out_sop_uid: str = ""  # de-identified (keyed) UID: safe to log and store
    detail: dict[str, Any] = field(default_factory=dict)  # route, pixel plan, verification (no PHI)


@dataclass(frozen=True)
class JobResult:
    job_id: int
    items: tuple[ItemResult, ...] = ()
    retry_reason: str = ""  # non-empty: a stage asked to retry the whole job
    seconds: dict[str, float] = field(default_factory=dict)


def describe_pixels(pixels: Any) -> str:
    """A pixel plan in one line (trail, rules page): engine, kept regions, no-face action where they apply."""
    if pixels.mode.value != "anonymize":
        return str(pixels.mode.value)
    preserve = ",".join(r.value for r in pixels.preserve) or "-"
    return f"anonymize {pixels.engine} preserve={preserve} no_face={pixels.no_face.value}"
