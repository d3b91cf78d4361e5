"""The per-job pipeline, run in a worker process: the stage sequence of :mod:`gateway.core.stages`
(decide → pixels → metadata → write) into the outbox (or, for ``vera-gateway anonymize``, an output folder).

A worker gets a picklable :class:`JobSpec` (file paths, never datasets) and returns a :class:`JobResult` with
one typed item per instance. It touches no ledger: the scheduler in the parent records results, so a worker
crash loses nothing (the job is simply run again; outputs are content-addressed and deterministic).
"""

from __future__ import annotations

from pathlib import Path

import structlog
from pydicom.dataset import Dataset

from anonymizer import pixel_stage
from anonymizer.keys import KeyRing
from gateway.core import faults
from gateway.core.jobs import JobResult, JobSpec, OutputLayout
from gateway.core.spool import ContentStore, atomic_write
from gateway.core.stages import Sink, run_stages

LOG = structlog.get_logger("gateway.pipeline")
_KEYS: KeyRing | None = None


def init_worker(secret: bytes, donor_bank: str | None = None, log_level: str | None = None) -> None:
    """Process-pool initializer: the key ring lives in the worker, never in a job message. A pool worker
    (``log_level`` given) logs JSON like the service."""
    global _KEYS
    _KEYS = KeyRing(secret)
    if log_level is not None:
        from gateway.ops.logs import configure_logging

        configure_logging(log_level)
    if donor_bank is not None:
        pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=Path(donor_bank)))


def process_job(spec: JobSpec) -> JobResult:
    """Run one job through the shared stage sequence; never raises for a per-instance problem."""
    assert _KEYS is not None, "init_worker was not called"
    run = run_stages(spec.instances, spec.rules, _KEYS, _sink(spec))
    if run.retry_reason:
        return JobResult(spec.job_id, retry_reason=run.retry_reason, seconds=dict(run.seconds))
    faults.hold("pipeline.after_outbox")
    return JobResult(spec.job_id, tuple(run.results), "", dict(run.seconds))


def _sink(spec: JobSpec) -> Sink:
    root = Path(spec.outbox_root)
    if spec.layout is OutputLayout.BY_SOP_INSTANCE_UID:

        def by_uid(data: bytes, ds: Dataset) -> str:
            name = f"{ds.SOPInstanceUID}.dcm"  # de-identified (keyed) UID: no PHI in the file name
            atomic_write(root / name, data)
            return name

        return by_uid
    store = ContentStore(root)
    return lambda data, ds: store.put(data).relpath
