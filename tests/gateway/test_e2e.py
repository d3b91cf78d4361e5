"""End to end with real peers: DCMTK storescu → gateway → Orthanc, and Orthanc → gateway → Orthanc.

Face photos take the real pixel path (``PixelMode.ANONYMIZE``): each one must end either forwarded (then it
is in Orthanc, de-identified) or quarantined by the pixel stage — never forwarded with original pixels.
Non-face Secondary Capture objects take a BLANK route and must all arrive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread

from anonymizer.plans import PixelMode
from dicom_rules import DicomDestination
from tests.conftest import Patient, Study, make_small_sc, make_vl_photo, patient_face_photos, write_study
from tests.gateway.conftest import (
    gateway_config,
    instance_states,
    ledger_of,
    split_rules,
    storescu,
    wait_until,
)

pytestmark = pytest.mark.integration


def settled(config: Any, total: int) -> dict[str, int] | None:
    counts = instance_states(config)
    done = counts.get("forwarded", 0) + counts.get("quarantined", 0)
    return counts if done == total else None


def orthanc_patient_ids(orthanc: Any) -> set[str]:
    return {
        orthanc.rest(f"/patients/{p}")["MainDicomTags"].get("PatientID", "")
        for p in orthanc.rest("/patients")
    }


def test_storescu_study_reaches_orthanc_deidentified(tmp_path: Path, gateway, orthanc, donor_bank) -> None:
    research = orthanc(aet="RESEARCH")
    patient, study = Patient(), Study()
    photos = [make_vl_photo(p, patient, study, n) for n, p in enumerate(patient_face_photos())]
    others = [make_small_sc(patient, study, 10 + n) for n in range(4)]
    files = write_study(tmp_path / "in", photos + others)
    config = gateway_config(tmp_path / "gw", donor_bank=donor_bank)
    destination = DicomDestination("research", "RESEARCH", "127.0.0.1", research.dicom_port)
    service = gateway(config, rules=split_rules(destination, PixelMode.ANONYMIZE, PixelMode.BLANK))
    result = storescu(service.port, files)
    assert result.returncode == 0, result.stderr
    counts = wait_until(lambda: settled(config, len(files)), timeout=120)
    with ledger_of(config) as ledger:
        rows = ledger.instances()
    photo_rows = [r for r in rows if r.sop_class_uid.endswith("77.1.4")]
    assert all(r.state == "forwarded" for r in rows if r not in photo_rows)
    assert all(r.state == "forwarded" or r.reason.startswith("pixels:") for r in photo_rows)
    assert any(r.state == "forwarded" for r in photo_rows), [r.reason for r in photo_rows]
    ids = research.wait_for_instances(counts.get("forwarded", 0))
    assert len(ids) == counts.get("forwarded", 0) >= len(others)
    assert patient.patient_id not in orthanc_patient_ids(research)
    for orthanc_id in ids:
        tags = research.instance_tags(orthanc_id)
        assert tags.get("PatientName") != patient.name and tags.get("StudyInstanceUID") != study.study_uid


def test_orthanc_to_gateway_to_orthanc(tmp_path: Path, gateway, orthanc) -> None:
    research = orthanc(aet="RESEARCH")
    config = gateway_config(tmp_path / "gw")
    hospital = orthanc(aet="HOSPITAL", modalities={"gateway": [config.ae_title, "127.0.0.1", config.port]})
    files = write_study(tmp_path / "in", [make_small_sc(number=n) for n in range(5)])
    uploaded = [hospital.rest("/instances", body=f.read_bytes(), method="POST")["ID"] for f in files]
    destination = DicomDestination("research", "RESEARCH", "127.0.0.1", research.dicom_port)
    gateway(config, rules=split_rules(destination, PixelMode.ANONYMIZE, PixelMode.BLANK))
    assert hospital.rest("/modalities/gateway/echo", body={}, method="POST") == {}
    job = hospital.rest(
        "/modalities/gateway/store", body={"Resources": uploaded, "Synchronous": True}, method="POST"
    )
    assert job.get("InstancesCount") == 5 and job.get("FailedInstancesCount", 0) == 0
    assert len(research.wait_for_instances(5, timeout=60)) == 5
    original_uids = {str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    received = {research.instance_tags(i)["SOPInstanceUID"] for i in research.instances()}
    assert received.isdisjoint(original_uids)
