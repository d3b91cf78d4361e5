"""`vera-gateway anonymize` on a folder: worker processes, summary JSON without PHI, resume after an
interruption (finished jobs skipped, a missing output written again), ID-less photos quarantined
on request."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread

from dicom_rules.loader import DEFAULT_RULES_PATH
from gateway.cli import main
from gateway.core.batch import JOURNAL, SUMMARY
from tests.conftest import Patient, Study, make_small_sc, write_study

PATIENT = Patient(patient_id="MRN-5550123", name="Roe^Richard")


def _rules(folder: Path, no_patient_id: str = "per_study") -> Path:
    text = DEFAULT_RULES_PATH.read_text().replace("mode: anonymize", "mode: blank")
    text = text.replace("no_patient_id: per_study", f"no_patient_id: {no_patient_id}")
    text = text.replace("      preserve: []\n", "")
    path = folder / "rules.yaml"
    path.write_text(text)
    return path


def _folder(folder: Path) -> list[Path]:
    """Three studies of two objects each (one of them without PatientID), and a file that is not DICOM."""
    datasets = [make_small_sc(PATIENT, study, n, side=32) for study in (Study(), Study()) for n in (1, 2)]
    no_id = Study()
    datasets += [make_small_sc(Patient(patient_id="", name=""), no_id, n, side=32) for n in (1, 2)]
    paths = write_study(folder, datasets)
    (folder / "notes.txt").write_text("not DICOM")
    return paths


def _run(tmp_path: Path, rules: Path, workers: int) -> int:
    secret = tmp_path / "secret.key"
    if not secret.exists():
        secret.write_text("ab" * 32)
        secret.chmod(0o600)
    argv = ["anonymize", str(tmp_path / "in"), str(tmp_path / "out"), "--rules", str(rules)]
    return main([*argv, "--secret", str(secret), "--workers", str(workers)])


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.dcm")}


def test_anonymize_on_two_workers_writes_outputs_and_a_summary_without_phi(tmp_path: Path) -> None:
    _folder(tmp_path / "in")
    assert _run(tmp_path, _rules(tmp_path), workers=2) == 2  # the text file is unreadable
    out = tmp_path / "out"
    outputs = sorted(out.glob("*.dcm"))
    assert len(outputs) == 6
    assert all(not dcmread(p).PixelData.strip(b"\x00") for p in outputs)  # blank mode: every pixel zero
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["outcomes"] == {"ok": 6, "quarantine": 0, "drop": 0, "unreadable": 1}
    assert summary["inputs"] == 7 and summary["workers"] == 2 and summary["resumed_from_earlier_run"] == 0
    for name in (SUMMARY, JOURNAL):
        text = (out / name).read_text()
        assert "MRN-5550123" not in text and "Roe" not in text and "1.2.826" not in text


def test_interrupted_run_resumes_skipping_finished_jobs(tmp_path: Path) -> None:
    _folder(tmp_path / "in")
    rules = _rules(tmp_path)
    _run(tmp_path, rules, workers=0)
    out = tmp_path / "out"
    first = _hashes(out)
    lost = sorted(out.glob("*.dcm"))[0]
    lost.unlink()  # as if the run had been killed before this job finished
    journal = (out / JOURNAL).read_text().splitlines()
    assert len(journal) == 3  # one line per study job
    assert _run(tmp_path, rules, workers=0) == 2
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["resumed_from_earlier_run"] == 4  # two studies skipped, the one that lost a file re-run
    assert summary["outcomes"]["ok"] == 6
    assert _hashes(out) == first  # the re-run job wrote the same bytes again


def test_rule_can_quarantine_photos_without_patient_id(tmp_path: Path) -> None:
    _folder(tmp_path / "in")
    assert _run(tmp_path, _rules(tmp_path, "quarantine"), workers=0) == 2
    summary = json.loads((tmp_path / "out" / SUMMARY).read_text())
    assert summary["outcomes"]["ok"] == 4
    assert summary["quarantine_reasons"] == {"rule:catch-all:no-patient-id": 2, "unreadable": 1}


@pytest.fixture(autouse=True)
def _reset_pixel_settings() -> Iterator[None]:
    """`--workers 0` sets up the pipeline in this process: leave no donor bank setting to later tests."""
    from anonymizer import pixel_stage

    yield
    pixel_stage.configure(pixel_stage.PixelSettings())
