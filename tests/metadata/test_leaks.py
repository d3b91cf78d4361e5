"""Canaries in every text-bearing place (all text VRs, private tags, nested sequences, EXIF/XMP/ICC/IPTC/COM
in the JPEG, overlay description/label/comments): none survives in the output bytes, for each option set."""

from __future__ import annotations

import logging

import pytest

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.plans import MetadataPlan, ProfileOption, TagAction, TagOverride
from tests.metadata.conftest import PhotoCase, saved
from tests.metadata.photos import standard_mode_survivors
from tests.metadata.test_profile_outcomes import OPTION_SETS

# Option sets that retain no identity (Retain Device/Institution/... keep what the admin asked for).
LEAK_SETS = {
    "basic": OPTION_SETS["basic"],
    "default": OPTION_SETS["default"],
    "clean": frozenset(
        {
            ProfileOption.CLEAN_DESCRIPTORS,
            ProfileOption.CLEAN_STRUCTURED_CONTENT,
            ProfileOption.CLEAN_GRAPHICS,
            ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES,
        }
    ),
}


def _survivors(case: PhotoCase, data: bytes) -> list[str]:
    return [c for c in case.canaries.made if c.encode() in data]


@pytest.mark.parametrize("name", sorted(LEAK_SETS))
def test_no_canary_survives_in_standard_mode_except_unlisted_short_text(
    full_photo: PhotoCase, keys: KeyRing, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    src = full_photo.fresh()
    allowed = standard_mode_survivors(src, full_photo.canaries)
    assert len(allowed) == 4
    out = saved(deidentify(src, MetadataPlan(options=LEAK_SETS[name]), keys, None))
    assert set(_survivors(full_photo, out)) <= allowed
    assert not [c for c in full_photo.canaries.made if c in caplog.text]


@pytest.mark.parametrize("sop", ["full_photo", "full_sc"])
@pytest.mark.parametrize("name", sorted(LEAK_SETS))
def test_no_canary_survives_in_strict_mode(
    request: pytest.FixtureRequest, keys: KeyRing, name: str, sop: str
) -> None:
    full_photo: PhotoCase = request.getfixturevalue(sop)
    plan = MetadataPlan(options=LEAK_SETS[name], strict=True)
    out = saved(deidentify(full_photo.fresh(), plan, keys, None))
    assert _survivors(full_photo, out) == []


def test_realistic_photo_leaks_no_identifier_uid_or_date(plain_photo: PhotoCase, keys: KeyRing) -> None:
    src = plain_photo.fresh()
    originals = [
        str(src.StudyInstanceUID),
        str(src.SeriesInstanceUID),
        str(src.SOPInstanceUID),
        str(src.ReferencedImageSequence[0].ReferencedSOPInstanceUID),
        "19800517",
        "20240312",
        "2019:03:05",
        "HOSP-A",
        "St Example Hospital",
        "Smith",
        "SN-3321",
    ]
    out = saved(deidentify(src, MetadataPlan(), keys, None))
    assert [v for v in originals if v.encode() in out] == []
    kept_on_purpose = standard_mode_survivors(plain_photo.fresh(), plain_photo.canaries)
    assert set(_survivors(plain_photo, out)) <= kept_on_purpose
    assert b"1.2.840.10008.5.1.4.1.1.77.1.4" in out  # well-known SOP Class UIDs are not remapped


def test_retain_safe_private_keeps_only_the_listed_element(plain_photo: PhotoCase, keys: KeyRing) -> None:
    plan = MetadataPlan(
        options=frozenset({ProfileOption.RETAIN_SAFE_PRIVATE}), safe_private=('0013,"VERA SAFE",10',)
    )
    out = deidentify(plain_photo.fresh(), plan, keys, None)
    assert out[0x00131010].value == 3 and out[0x00130010].value == "VERA SAFE"
    assert 0x00131011 not in out and 0x00110010 not in out and 0x00111001 not in out


def test_overrides_keep_remove_empty_replace_hash_shift(plain_photo: PhotoCase, keys: KeyRing) -> None:
    src = plain_photo.fresh()
    overrides = (
        TagOverride(0x00080070, TagAction.REMOVE),  # Manufacturer
        TagOverride(0x00081090, TagAction.KEEP),  # Manufacturer's Model Name (X in the table)
        TagOverride(0x00081030, TagAction.REPLACE, "Orthodontic photos"),  # Study Description
        TagOverride(0x00204000, TagAction.HASH),  # Image Comments
        TagOverride(0x00080060, TagAction.EMPTY),  # Modality
        TagOverride(0x00100030, TagAction.SHIFT_DATE),  # Patient's Birth Date (X in the table)
    )
    out = deidentify(src, MetadataPlan(overrides=overrides), keys, None)
    pseudonym = keys.patient_pseudonym(plain_photo.fresh().PatientID, "HOSP-A")
    assert "Manufacturer" not in out and out.ManufacturerModelName == "D750"
    assert out.StudyDescription == "Orthodontic photos" and not out.Modality
    assert out.ImageComments != plain_photo.fresh().ImageComments and len(out.ImageComments) == 16
    assert out.PatientBirthDate == (
        __import__("datetime").date(1980, 5, 17)
        + __import__("datetime").timedelta(days=keys.date_offset_days(pseudonym))
    ).strftime("%Y%m%d")


def test_safe_private_matches_by_creator_whatever_block_it_was_given(
    plain_photo: PhotoCase, keys: KeyRing
) -> None:
    ds = plain_photo.fresh()
    ds.add_new(0x00190010, "LO", "OTHER VENDOR")
    ds.add_new(0x00190011, "LO", "VERA SAFE")  # the safe creator in block 0x11 this time
    ds.add_new(0x00191010, "LO", "QZBLOCK10XK")
    ds.add_new(0x00191110, "US", 5)
    plan = MetadataPlan(
        options=frozenset({ProfileOption.RETAIN_SAFE_PRIVATE}), safe_private=('0019,"VERA SAFE",10',)
    )
    out = deidentify(ds, plan, keys, None)
    assert out[0x00191110].value == 5 and out[0x00190011].value == "VERA SAFE"
    assert 0x00191010 not in out and 0x00190010 not in out


def test_strict_mode_keeps_what_the_plan_lists(plain_photo: PhotoCase, keys: KeyRing) -> None:
    ds = plain_photo.fresh()
    kept = deidentify(ds, MetadataPlan(strict=True, strict_keep=("Manufacturer",)), keys, None)
    assert kept.Manufacturer == plain_photo.fresh().Manufacturer
    assert "Manufacturer" not in deidentify(plain_photo.fresh(), MetadataPlan(strict=True), keys, None)
