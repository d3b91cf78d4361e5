"""The per-job pipeline, run in a worker process: load → decide route → pixel stage → metadata stage → outbox.

A worker gets a picklable :class:`JobSpec` (spool paths, never datasets) and returns a :class:`JobResult` with
one typed item per instance. It touches no ledger: the scheduler in the parent records results, so a worker
crash loses nothing (the job is simply run again; outputs are content-addressed and deterministic).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

import structlog
from pydicom import dcmread
from pydicom.dataset import Dataset

from anonymizer import pixel_stage
from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.metadata.errors import MetadataError
from anonymizer.outcomes import Ok, Outcome, Quarantine, Retry
from anonymizer.plans import PairingScope, PixelMode
from dicom_rules import RouteAction, RouteDecision, RuleSet
from gateway.core import faults
from gateway.core.jobs import InstanceSpec, ItemKind, ItemResult, JobResult, JobSpec
from gateway.core.spool import ContentStore

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


@dataclass
class _Item:
    spec: InstanceSpec
    ds: Dataset
    decision: RouteDecision


def process_job(spec: JobSpec) -> JobResult:
    """Run one job; never raises for a per-instance problem (those become quarantine items)."""
    assert _KEYS is not None, "init_worker was not called"
    timings: dict[str, float] = defaultdict(float)
    results: list[ItemResult] = []
    groups: dict[tuple[str, str, str], list[_Item]] = defaultdict(list)
    for inst in spec.instances:
        started = time.perf_counter()
        item_or_result = _load_and_decide(inst, spec.rules)
        timings["decide"] += time.perf_counter() - started
        if isinstance(item_or_result, ItemResult):
            results.append(item_or_result)
        else:
            groups[_group_key(item_or_result, _KEYS)].append(item_or_result)
    store = ContentStore(Path(spec.outbox_root))
    for items in groups.values():
        group_results = _run_group(items, _KEYS, store, timings)
        if isinstance(group_results, Retry):
            return JobResult(spec.job_id, retry_reason=group_results.reason, seconds=dict(timings))
        results.extend(group_results)
    faults.hold("pipeline.after_outbox")
    return JobResult(spec.job_id, tuple(sorted(results, key=lambda r: r.instance_id)), "", dict(timings))


def _load_and_decide(inst: InstanceSpec, rules: RuleSet) -> _Item | ItemResult:
    try:
        ds = dcmread(inst.spool_file)
    except Exception as exc:
        return ItemResult(inst.instance_id, ItemKind.QUARANTINE, f"spool-unreadable:{type(exc).__name__}")
    try:
        decision = rules.decide(ds, inst.calling_ae, inst.calling_ip)
    except Exception as exc:
        return ItemResult(inst.instance_id, ItemKind.QUARANTINE, f"rules-error:{type(exc).__name__}")
    if decision.action is RouteAction.QUARANTINE:
        return ItemResult(
            inst.instance_id, ItemKind.QUARANTINE, f"rule:{decision.route_name}:{decision.reason}"
        )
    if decision.action is RouteAction.DROP:
        return ItemResult(inst.instance_id, ItemKind.DROP, f"rule:{decision.route_name}:{decision.reason}")
    if decision.destination is None:
        return ItemResult(inst.instance_id, ItemKind.QUARANTINE, f"rule:{decision.route_name}:no-destination")
    return _Item(inst, ds, decision)


def patient_pseudonym(ds: Dataset, keys: KeyRing) -> str:
    return keys.patient_pseudonym(str(ds.get("PatientID", "")), str(ds.get("IssuerOfPatientID", "")))


def _group_key(item: _Item, keys: KeyRing) -> tuple[str, str, str]:
    """Photos that share one synthetic identity: same route and same patient (or same study).

    The pixel plan is part of the key: a group runs under one plan, so two decisions that share a route
    name but not a plan (a RuleSet built in code) must never pool a face photo into a passthrough group.
    """
    pixels = item.decision.pixels
    scope = str(item.ds.get("StudyInstanceUID", "")) if pixels.pairing is PairingScope.STUDY else ""
    return (item.decision.route_name, repr(pixels), patient_pseudonym(item.ds, keys) + "|" + scope)


def _run_group(
    items: list[_Item], keys: KeyRing, store: ContentStore, timings: dict[str, float]
) -> list[ItemResult] | Retry:
    plan = items[0].decision.pixels
    seed = keys.identity_seed(patient_pseudonym(items[0].ds, keys))
    started = time.perf_counter()
    outcomes = pixel_stage.anonymize_group([i.ds for i in items], plan, seed)
    timings["pixels"] += time.perf_counter() - started
    retry = next((o for o in outcomes if isinstance(o, Retry)), None)
    if retry is not None:
        return retry
    results = []
    for item, outcome in zip(items, outcomes, strict=True):
        started = time.perf_counter()
        result = _finish_item(item, outcome, keys, store)
        results.append(replace(result, detail=item_detail(item.decision, outcome)))
        timings["metadata"] += time.perf_counter() - started
    return results


def item_detail(decision: RouteDecision, outcome: Outcome) -> dict[str, object]:
    """What the admin's study trail shows: route, pixel plan and the verification outcome (no PHI)."""
    p = decision.pixels
    anonymize = p.mode is PixelMode.ANONYMIZE
    preserve = ",".join(r.value for r in p.preserve) or "-"
    plan = (
        f"anonymize {p.engine} preserve={preserve} no_face={p.no_face.value}" if anonymize else p.mode.value
    )
    detail: dict[str, object] = {"route": decision.route_name, "pixels": plan}
    report = outcome.report if isinstance(outcome, Ok) else None
    if report is not None and anonymize:
        detail.update(faces=report.faces_found, engine=report.engine)
        if report.faces_found:
            detail["verified"] = report.faces_replaced_and_verified
        detail.update({k: round(float(v), 4) for k, v in report.scores.items()})
    return detail


def _finish_item(item: _Item, outcome: Outcome, keys: KeyRing, store: ContentStore) -> ItemResult:
    iid = item.spec.instance_id
    if isinstance(outcome, Quarantine):
        return ItemResult(iid, ItemKind.QUARANTINE, f"pixels:{outcome.reason}")
    assert isinstance(outcome, Ok)
    try:
        out = deidentify(outcome.dataset, item.decision.metadata, keys, outcome.report)
        buf = BytesIO()
        out.save_as(buf, enforce_file_format=True)
        stored = store.put(buf.getvalue())
    except MetadataError as exc:
        return ItemResult(iid, ItemKind.QUARANTINE, f"metadata:{exc.reason}")
    except OSError as exc:
        return ItemResult(iid, ItemKind.QUARANTINE, f"outbox-write:{type(exc).__name__}")
    except Exception as exc:
        return ItemResult(iid, ItemKind.QUARANTINE, f"metadata-error:{type(exc).__name__}")
    dest = item.decision.destination
    return ItemResult(
        iid, ItemKind.OK, "", dest.name if dest else "", stored.relpath, str(out.SOPInstanceUID)
    )
