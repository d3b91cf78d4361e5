"""The hot path compiles once per plan, never decodes pixels and never copies clean Pixel Data; nesting."""

from __future__ import annotations

import pydicom
import pytest

from anonymizer.keys import KeyRing
from anonymizer.metadata import MetadataError, deidentify
from anonymizer.metadata.compiled import compile_plan
from anonymizer.metadata.values import shift_value
from anonymizer.plans import MetadataPlan, ProfileOption, TagAction, TagOverride
from tests.metadata.conftest import PhotoCase

KEYS = KeyRing(b"k" * 32)
PIXEL_DATA = 0x7FE00010


def test_plan_is_compiled_once_and_reused(plain_photo: PhotoCase) -> None:
    plan = MetadataPlan(rule_set_name="compile-once")
    compile_plan.cache_clear()
    for _ in range(3):
        deidentify(plain_photo.fresh(), plan, KEYS, None)
    info = compile_plan.cache_info()
    assert info.misses == 1 and info.hits == 2


def test_pixels_are_never_decoded_and_clean_pixel_data_is_not_copied(
    plain_photo: PhotoCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    once = deidentify(plain_photo.fresh(), MetadataPlan(), KEYS, None)  # JPEG segments stripped here

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(refuse))
    monkeypatch.setattr(pydicom.dataset.Dataset, "convert_pixel_data", refuse)
    before = once.get_item(PIXEL_DATA).value
    again = deidentify(once, MetadataPlan(), KEYS, None)
    assert again.get_item(PIXEL_DATA).value is before  # nothing left to strip: the very same bytes object


def test_nested_items_two_levels_deep_are_remapped_shifted_and_cleaned(plain_photo: PhotoCase) -> None:
    src = plain_photo.fresh()
    inner = src.SourceImageSequence[0].ContentSequence[0]
    inner_uid, inner_date = str(inner.ReferencedSOPInstanceUID), str(inner.ContentDate)
    basic = deidentify(plain_photo.fresh(), MetadataPlan(), KEYS, None)
    assert [len(i) for i in basic.SourceImageSequence[0].ContentSequence] == [0]  # D: one empty item
    options = MetadataPlan().options | {ProfileOption.CLEAN_STRUCTURED_CONTENT}
    out = deidentify(src, MetadataPlan(options=options), KEYS, None)  # C: content kept, cleaned inside
    pseudonym = KEYS.patient_pseudonym(plain_photo.fresh().PatientID, "HOSP-A")
    got = out.SourceImageSequence[0].ContentSequence[0]
    assert got.ReferencedSOPInstanceUID == KEYS.uid(inner_uid)
    assert got.ContentDate == shift_value("DA", inner_date, KEYS.date_offset_days(pseudonym), 0)
    assert got.PersonName == "ANONYMOUS" and "InstitutionName" not in got and "TextValue" not in got
    assert not [e for e in got if e.tag.is_private]
    assert "ReferencedImageSequence" not in out  # X/Z/U* of a Type 3 attribute: removed


def test_replace_sets_absent_attributes_and_rejects_values_the_vr_cannot_hold(plain_photo: PhotoCase) -> None:
    comments = TagOverride(0x00104000, TagAction.REPLACE, "research cohort A")  # Patient Comments
    out = deidentify(plain_photo.fresh(), MetadataPlan(overrides=(comments,)), KEYS, None)
    assert out.PatientComments == "research cohort A"
    for tag in (0x00280010, 0x00200013):  # Rows (US), Instance Number (IS)
        with pytest.raises(MetadataError):
            plan = MetadataPlan(overrides=(TagOverride(tag, TagAction.REPLACE, "x"),))
            deidentify(plain_photo.fresh(), plan, KEYS, None)


def test_hash_override_on_a_date_shifts_it(plain_photo: PhotoCase) -> None:
    plan = MetadataPlan(overrides=(TagOverride(0x00100030, TagAction.HASH),))  # Patient's Birth Date
    out = deidentify(plain_photo.fresh(), plan, KEYS, None)
    pseudonym = KEYS.patient_pseudonym(plain_photo.fresh().PatientID, "HOSP-A")
    assert out.PatientBirthDate == shift_value("DA", "19800517", KEYS.date_offset_days(pseudonym), 0)
