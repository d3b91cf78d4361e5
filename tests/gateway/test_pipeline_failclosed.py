"""Fail-closed paths of one pipeline job, run in-process (no pool, no peers): what may reach the outbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset

from anonymizer.plans import MetadataPlan, PixelMode, PixelPlan
from dicom_rules import FolderDestination, RouteAction, RouteDecision, RuleSet
from gateway.core.jobs import InstanceSpec, ItemKind, JobSpec
from gateway.core.pipeline import init_worker, process_job
from tests.conftest import Patient, make_small_sc, write_study

DEST = FolderDestination("out", Path("out"))


def _decision(mode: PixelMode, action: RouteAction = RouteAction.FORWARD, name: str = "r") -> RouteDecision:
    return RouteDecision(name, action, DEST, PixelPlan(mode=mode), MetadataPlan(), reason="test-reason")


class ByModality(RuleSet):
    """Decides by Modality (OP → ``op``, anything else → ``other``); both decisions may share a route name."""

    def decide(self, ds: Dataset, calling_ae: str = "", calling_ip: str = "") -> RouteDecision:
        return self.op if ds.Modality == "OP" else self.other  # type: ignore[attr-defined,no-any-return]


def _rules(op: RouteDecision, other: RouteDecision) -> RuleSet:
    rules = ByModality(name="t", sha256="4" * 64, destinations={"out": DEST}, catch_all=other)
    object.__setattr__(rules, "op", op)
    object.__setattr__(rules, "other", other)
    return rules


def _run(tmp_path: Path, datasets: list[Dataset], rules: RuleSet) -> tuple[Any, Path]:
    init_worker(b"k" * 32)
    files = write_study(tmp_path / "spool", datasets)
    spec = JobSpec(
        job_id=1,
        instances=tuple(InstanceSpec(i + 1, str(f), "PACS", "127.0.0.1") for i, f in enumerate(files)),
        outbox_root=str(tmp_path / "outbox"),
        rules=rules,
    )
    return process_job(spec), tmp_path / "outbox"


def _outbox_files(outbox: Path) -> list[Path]:
    return sorted(outbox.rglob("*.dcm")) if outbox.exists() else []


def test_same_route_name_with_different_pixel_plans_never_passes_a_photo_through(tmp_path: Path) -> None:
    fundus = make_small_sc(number=1, seed=1)
    fundus.Modality = "OP"
    photo = make_small_sc(number=2, seed=2)
    original = np.frombuffer(photo.PixelData, np.uint8).copy()
    rules = _rules(_decision(PixelMode.PASSTHROUGH, name="same"), _decision(PixelMode.BLANK, name="same"))
    result, outbox = _run(tmp_path, [fundus, photo], rules)
    assert [i.kind for i in result.items] == [ItemKind.OK, ItemKind.OK]
    out = dcmread(outbox / result.items[1].out_path)
    assert not np.frombuffer(out.PixelData, np.uint8).any()  # blanked, as its own route said
    assert not np.array_equal(np.frombuffer(out.PixelData, np.uint8), original)


def test_burned_in_photo_is_quarantined_and_the_patients_others_still_go_out(tmp_path: Path) -> None:
    patient = Patient()
    good = [make_small_sc(patient, number=n, seed=n) for n in (1, 3)]
    bad = make_small_sc(patient, number=2, seed=2)
    bad.BurnedInAnnotation = "YES"
    rules = _rules(_decision(PixelMode.BLANK), _decision(PixelMode.BLANK))
    result, outbox = _run(tmp_path, [good[0], bad, good[1]], rules)
    kinds = {i.instance_id: i for i in result.items}
    assert kinds[2].kind is ItemKind.QUARANTINE and kinds[2].reason == "metadata:burned-in-annotation"
    assert not kinds[2].out_path
    assert kinds[1].kind is kinds[3].kind is ItemKind.OK
    outputs = _outbox_files(outbox)
    assert len(outputs) == 2
    for path in outputs:
        data = path.read_bytes()
        assert patient.patient_id.encode() not in data and bad.SOPInstanceUID.encode() not in data


def test_rule_quarantine_and_drop_write_nothing_to_the_outbox(tmp_path: Path) -> None:
    op = make_small_sc(number=1, seed=1)
    op.Modality = "OP"
    other = make_small_sc(number=2, seed=2)
    rules = _rules(
        _decision(PixelMode.PASSTHROUGH, RouteAction.QUARANTINE, "q"),
        _decision(PixelMode.PASSTHROUGH, RouteAction.DROP, "d"),
    )
    result, outbox = _run(tmp_path, [op, other], rules)
    assert [(i.kind, i.reason) for i in result.items] == [
        (ItemKind.QUARANTINE, "rule:q:test-reason"),
        (ItemKind.DROP, "rule:d:test-reason"),
    ]
    assert _outbox_files(outbox) == []
