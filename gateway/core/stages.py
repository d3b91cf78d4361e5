"""The one de-identification stage sequence: decide → pixels → metadata → write.

The service worker (:func:`gateway.core.pipeline.process_job`) and ``vera-gateway anonymize`` both run a job
through :func:`run_stages`; only the output layout differs (content-addressed outbox, or files named by
their de-identified SOP Instance UID). Each stage is a class with one ``process`` method returning Ok,
Retry or Quarantine(reason) (the decide stage may also answer Drop, when a rule says so); the runner owns
timing and turns outcomes into :class:`~gateway.core.jobs.ItemResult` records.

Every file is read once (by the decide stage); the datasets stay in memory for the length of one job.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from io import BytesIO

from pydicom import dcmread
from pydicom.dataset import Dataset

from anonymizer import pixel_stage
from anonymizer.keys import IdentityError, KeyRing, has_patient_id
from anonymizer.metadata import deidentify
from anonymizer.metadata.errors import MetadataError
from anonymizer.outcomes import Ok, Outcome, Quarantine, Retry
from anonymizer.plans import NoPatientIdAction, PairingScope, PixelMode
from dicom_rules import RouteAction, RouteDecision, RuleSet
from gateway.core.jobs import InstanceSpec, ItemKind, ItemResult, describe_pixels

Sink = Callable[[bytes, Dataset], str]  # (file bytes, output dataset) → where it was written (relative path)
GroupKey = tuple[str, str, str]


@dataclass(frozen=True)
class Drop:
    """A rule said drop: nothing is written and nothing is quarantined."""

    reason: str


@dataclass
class Item:
    """One instance on its way through the stages; each stage replaces ``ds`` with its output."""

    spec: InstanceSpec
    ds: Dataset | None = None
    decision: RouteDecision | None = None
    patient: str = ""  # KeyRing.patient_of: the one patient identity
    outcome: Ok | None = None  # the pixel stage's output (dataset and report)
    out_path: str = ""


class Decide:
    """Read the file (once), pick the route, key the patient."""

    def __init__(self, rules: RuleSet, keys: KeyRing) -> None:
        self.rules, self.keys = rules, keys

    def process(self, item: Item) -> Ok | Quarantine | Drop:
        try:
            item.ds = dcmread(item.spec.spool_file)
        except Exception as exc:
            return Quarantine(f"spool-unreadable:{type(exc).__name__}")
        try:
            decision = self.rules.decide(item.ds, item.spec.calling_ae, item.spec.calling_ip)
        except Exception as exc:
            return Quarantine(f"rules-error:{type(exc).__name__}")
        if decision.action is RouteAction.QUARANTINE:
            return Quarantine(f"rule:{decision.route_name}:{decision.reason}")
        if decision.action is RouteAction.DROP:
            return Drop(f"rule:{decision.route_name}:{decision.reason}")
        if decision.destination is None:
            return Quarantine(f"rule:{decision.route_name}:no-destination")
        if decision.pixels.no_patient_id is NoPatientIdAction.QUARANTINE and not has_patient_id(item.ds):
            return Quarantine(f"rule:{decision.route_name}:no-patient-id")
        try:
            item.patient = self.keys.patient_of(item.ds)
        except IdentityError:
            return Quarantine("no-identity")
        item.decision = decision
        return Ok(item.ds)


def group_key(item: Item) -> GroupKey:
    """Photos that share one synthetic identity: same route and same patient (or same study).

    The pixel plan is part of the key: a group runs under one plan, so two decisions that share a route
    name but not a plan (a RuleSet built in code) must never pool a face photo into a passthrough group.
    """
    assert item.decision is not None and item.ds is not None
    pixels = item.decision.pixels
    scope = str(item.ds.get("StudyInstanceUID", "")) if pixels.pairing is PairingScope.STUDY else ""
    return (item.decision.route_name, repr(pixels), item.patient + "|" + scope)


class Pixels:
    """One pairing group at a time: every face of the group gets the identity seeded by its patient."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    def process(self, group: list[Item]) -> list[Outcome]:
        first = group[0]
        assert first.decision is not None
        seed = self.keys.identity_seed(first.patient)
        datasets = [i.ds for i in group if i.ds is not None]
        return pixel_stage.anonymize_group(datasets, first.decision.pixels, seed)


class Metadata:
    """PS3.15 header de-identification of the pixel stage's output."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    def process(self, item: Item) -> Ok | Quarantine:
        assert item.outcome is not None and item.decision is not None
        try:
            out = deidentify(item.outcome.dataset, item.decision.metadata, self.keys, item.outcome.report)
        except MetadataError as exc:
            return Quarantine(f"metadata:{exc.reason}")
        except Exception as exc:
            return Quarantine(f"metadata-error:{type(exc).__name__}")
        return Ok(out)


class Write:
    """Serialize (file meta enforced) and hand the bytes to the sink (outbox or output folder)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def process(self, item: Item) -> Ok | Quarantine:
        assert item.ds is not None
        try:
            buf = BytesIO()
            item.ds.save_as(buf, enforce_file_format=True)
            item.out_path = self.sink(buf.getvalue(), item.ds)
        except OSError as exc:
            return Quarantine(f"outbox-write:{type(exc).__name__}")
        except Exception as exc:
            return Quarantine(f"metadata-error:{type(exc).__name__}")
        return Ok(item.ds)


@dataclass
class StageRun:
    """What one job gave: a result per instance, or a retry reason (the whole job runs again)."""

    results: list[ItemResult] = field(default_factory=list)
    retry_reason: str = ""
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))


def _failed(item: Item, outcome: Quarantine | Drop) -> ItemResult:
    kind = ItemKind.DROP if isinstance(outcome, Drop) else ItemKind.QUARANTINE
    return ItemResult(item.spec.instance_id, kind, outcome.reason)


class _Timer:
    def __init__(self, run: StageRun, stage: str) -> None:
        self.run, self.stage = run, stage

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.run.seconds[self.stage] += time.perf_counter() - self.started


def item_detail(decision: RouteDecision, outcome: Outcome) -> dict[str, object]:
    """What the admin's study trail shows: route, pixel plan and the verification outcome (no PHI)."""
    detail: dict[str, object] = {"route": decision.route_name, "pixels": describe_pixels(decision.pixels)}
    report = outcome.report if isinstance(outcome, Ok) else None
    if report is not None and decision.pixels.mode is PixelMode.ANONYMIZE:
        detail.update(faces=report.faces_found, engine=report.engine)
        if report.faces_found:
            detail["verified"] = report.faces_replaced_and_verified
        detail.update({k: int(v) if k == "rung" else round(float(v), 4) for k, v in report.scores.items()})
    return detail


def run_stages(instances: tuple[InstanceSpec, ...], rules: RuleSet, keys: KeyRing, sink: Sink) -> StageRun:
    """Run one job through decide → pixels → metadata → write; never raises for a per-instance problem."""
    run = StageRun()
    groups: dict[GroupKey, list[Item]] = defaultdict(list)
    decide = Decide(rules, keys)
    for spec in instances:
        item = Item(spec)
        with _Timer(run, "decide"):
            outcome = decide.process(item)
        if isinstance(outcome, Quarantine | Drop):
            run.results.append(_failed(item, outcome))
        else:
            groups[group_key(item)].append(item)
    pixels, finish = Pixels(keys), _Finisher(keys, sink, run)
    for group in groups.values():
        with _Timer(run, "pixels"):
            outcomes = pixels.process(group)
        retry = next((o for o in outcomes if isinstance(o, Retry)), None)
        if retry is not None:
            run.retry_reason = retry.reason
            return run
        for item, outcome in zip(group, outcomes, strict=True):
            item.ds = None  # the input is no longer needed: only the output dataset stays in memory
            result = finish.process(item, outcome)
            assert item.decision is not None
            run.results.append(replace(result, detail=item_detail(item.decision, outcome)))
    run.results.sort(key=lambda r: r.instance_id)
    return run


class _Finisher:
    """Metadata then write for one item whose pixels are done."""

    def __init__(self, keys: KeyRing, sink: Sink, run: StageRun) -> None:
        self.metadata, self.write, self.run = Metadata(keys), Write(sink), run

    def process(self, item: Item, pixels: Outcome) -> ItemResult:
        iid = item.spec.instance_id
        if isinstance(pixels, Quarantine):
            return ItemResult(iid, ItemKind.QUARANTINE, f"pixels:{pixels.reason}")
        assert isinstance(pixels, Ok)
        item.outcome = pixels
        with _Timer(self.run, "metadata"):
            header = self.metadata.process(item)
        if isinstance(header, Quarantine):
            return ItemResult(iid, ItemKind.QUARANTINE, header.reason)
        item.ds, item.outcome = header.dataset, None
        with _Timer(self.run, "write"):
            written = self.write.process(item)
        if isinstance(written, Quarantine):
            return ItemResult(iid, ItemKind.QUARANTINE, written.reason)
        assert item.decision is not None and item.ds is not None
        dest = item.decision.destination
        sop_uid = str(item.ds.SOPInstanceUID)
        item.ds = None
        return ItemResult(iid, ItemKind.OK, "", dest.name if dest else "", item.out_path, sop_uid)
