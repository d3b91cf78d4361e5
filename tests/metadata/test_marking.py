"""Marking: identity removed, method, CID 7050 codes for exactly what was applied, visual-features flag."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from anonymizer.keys import KeyRing
from anonymizer.metadata import BurnedInAnnotationError, deidentify
from anonymizer.plans import MetadataPlan, PixelReport, ProfileOption, TagAction, TagOverride
from tests.metadata.conftest import PhotoCase

KEYS = KeyRing(b"k" * 32)


def _codes(ds: Dataset) -> list[str]:
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]


def test_default_plan_marks_basic_modified_dates_clean_descriptors(plain_photo: PhotoCase) -> None:
    plan = MetadataPlan(rule_set_name="orthodontics", rule_set_hash="abc123def4567890ffff")
    ds = deidentify(plain_photo.fresh(), plan, KEYS, None)
    assert ds.PatientIdentityRemoved == "YES"
    assert _codes(ds) == ["113100", "113105", "113107"]
    assert all(item.CodingSchemeDesignator == "DCM" for item in ds.DeidentificationMethodCodeSequence)
    assert "rules orthodontics abc123def4567890" in ds.DeidentificationMethod
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    assert ds.RecognizableVisualFeatures == "YES"


def test_faces_replaced_and_verified_claims_113102_and_no_visual_features(plain_photo: PhotoCase) -> None:
    report = PixelReport(faces_found=1, faces_replaced_and_verified=True, engine="surrogate")
    ds = deidentify(plain_photo.fresh(), MetadataPlan(options=frozenset()), KEYS, report)
    assert _codes(ds) == ["113100", "113102"]
    assert ds.RecognizableVisualFeatures == "NO"
    assert "pixels surrogate" in ds.DeidentificationMethod
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"


def test_unverified_faces_keep_visual_features_yes(plain_photo: PhotoCase) -> None:
    report = PixelReport(faces_found=1, faces_replaced_and_verified=False, engine="surrogate")
    ds = deidentify(plain_photo.fresh(), MetadataPlan(), KEYS, report)
    assert "113102" not in _codes(ds) and ds.RecognizableVisualFeatures == "YES"


def test_full_dates_are_unmodified_and_every_option_has_its_code(plain_photo: PhotoCase) -> None:
    options = frozenset(ProfileOption) - {ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES}
    ds = deidentify(plain_photo.fresh(), MetadataPlan(options=options), KEYS, None)
    assert _codes(ds) == [
        "113100",
        "113103",
        "113104",
        "113105",
        "113106",
        "113108",
        "113109",
        "113110",
        "113111",
        "113112",
    ]
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"
    assert ds.StudyDate == plain_photo.fresh().StudyDate


def test_burned_in_annotation_is_refused_unless_allowed(plain_photo: PhotoCase) -> None:
    ds = plain_photo.fresh()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotationError) as err:
        deidentify(ds, MetadataPlan(), KEYS, None)
    assert str(ds.PatientID) not in str(err.value)
    allowed = deidentify(ds, MetadataPlan(allow_burned_in_annotation=True), KEYS, None)
    assert allowed.PatientIdentityRemoved == "NO"


def test_study_id_and_accession_are_non_empty_pseudonyms_even_when_absent(plain_photo: PhotoCase) -> None:
    ds = plain_photo.fresh()
    del ds.StudyID
    ds.AccessionNumber = ""
    out = deidentify(ds, MetadataPlan(), KEYS, None)
    assert out.StudyID.startswith("S") and len(out.StudyID) == 13
    assert out.AccessionNumber.startswith("A") and len(out.AccessionNumber) == 13
    assert out.PatientName == out.PatientID == KEYS.patient_pseudonym(plain_photo.fresh().PatientID, "HOSP-A")


def test_hash_override_on_an_empty_accession_still_gets_a_pseudonym(plain_photo: PhotoCase) -> None:
    ds = plain_photo.fresh()
    del ds.AccessionNumber
    plan = MetadataPlan(overrides=(TagOverride(0x00080050, TagAction.HASH),))
    assert deidentify(ds, plan, KEYS, None).AccessionNumber.startswith("A")
