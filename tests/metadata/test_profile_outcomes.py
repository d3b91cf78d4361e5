"""Table-driven: for each option set, every Table E.1-1 attribute of a real photo ends as the table says."""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.metadata.compiled import PSEUDONYM_TAGS
from anonymizer.metadata.table import Code, load_table, resolve
from anonymizer.metadata.values import BINARY_VRS, shift_value
from anonymizer.plans import MetadataPlan, ProfileOption
from tests.metadata.conftest import PhotoCase
from tests.metadata.photos import SAFE_CREATOR, table_tags

Opt = ProfileOption
OPTION_SETS = {
    "basic": frozenset(),
    "default": MetadataPlan().options,
    "retain_all": frozenset(
        {
            Opt.RETAIN_UIDS,
            Opt.RETAIN_DEVICE_IDENTITY,
            Opt.RETAIN_INSTITUTION_IDENTITY,
            Opt.RETAIN_PATIENT_CHARACTERISTICS,
            Opt.RETAIN_LONGITUDINAL_FULL_DATES,
            Opt.RETAIN_SAFE_PRIVATE,
        }
    ),
    "clean_all": frozenset(
        {
            Opt.CLEAN_DESCRIPTORS,
            Opt.CLEAN_STRUCTURED_CONTENT,
            Opt.CLEAN_GRAPHICS,
            Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES,
            Opt.RETAIN_DEVICE_IDENTITY,
        }
    ),
}


def _text(value: object) -> str:
    return "\\".join(str(v) for v in value) if isinstance(value, MultiValue | list) else str(value)


class Judge:
    def __init__(self, case: PhotoCase, options: frozenset[ProfileOption], keys: KeyRing) -> None:
        src = case.fresh()
        self.keys, self.options = keys, options
        self.pseudonym = keys.patient_pseudonym(str(src.PatientID), str(src.IssuerOfPatientID))
        self.days = keys.date_offset_days(self.pseudonym)
        self.full_dates = (
            Opt.RETAIN_LONGITUDINAL_FULL_DATES in options
            and Opt.RETAIN_LONGITUDINAL_MODIFIED_DATES not in options
        )

    def shifted(self, vr: str, original: object) -> str:
        return _text(original) if self.full_dates else shift_value(vr, _text(original), self.days, 0)

    def check(self, out: Dataset, tag: int, vr: str, original: object, code: Code) -> str | None:
        """None when the outcome matches the code, else what went wrong."""
        present = tag in out
        value = out[tag].value if present else None
        if tag in PSEUDONYM_TAGS:
            return None if present and value and _text(value) != _text(original) else "pseudonym missing"
        if code is Code.REMOVE or (code is Code.CLEAN and vr in BINARY_VRS):  # binary cannot be cleaned
            return None if not present else "not removed"
        if not present:
            return "missing"
        expected = self._expected(vr, original, value, code)
        return None if expected else f"{code.name} gave {str(value)[:30]!r}"

    def _expected(self, vr: str, original: Any, value: Any, code: Code) -> bool:
        if code is Code.ZERO:
            return not value
        if code is Code.DUMMY:
            if vr == "UI":
                return bool(value == self.keys.uid(str(original)))
            if vr == "SQ":
                return len(value) == 1 and len(value[0]) == 0
            return value not in (None, "", original)
        if code is Code.UID:
            return bool(value == self.keys.uid(str(original)))
        if code is Code.U_SEQ:
            return all(
                i.ReferencedSOPInstanceUID == self.keys.uid(str(o.ReferencedSOPInstanceUID))
                for i, o in zip(value, original, strict=True)
            )
        if vr == "SQ":
            return len(value) == len(original)
        if vr in ("DA", "DT"):
            return _text(value) == self.shifted(vr, original)
        if code is Code.KEEP or vr == "TM":
            return _text(value) == _text(original)
        if vr == "AE":  # Clean: keyed AE title
            return _text(value).startswith("AE") and _text(value) != _text(original)
        return "QZ" not in _text(value)  # Clean text: no canary word survives


@pytest.mark.parametrize("sop", ["full_photo", "full_sc"])
@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_every_table_attribute_matches_its_action(
    request: pytest.FixtureRequest, keys: KeyRing, name: str, sop: str
) -> None:
    full_photo: PhotoCase = request.getfixturevalue(sop)
    options = OPTION_SETS[name]
    plan = MetadataPlan(options=options, safe_private=(f'0013,"{SAFE_CREATOR}",10',))
    out = deidentify(full_photo.fresh(), plan, keys, None)
    judge = Judge(full_photo, options, keys)
    rows = load_table().by_tag()
    wrong = {}
    for tag, vr in table_tags():
        code = resolve(rows[f"{tag:08x}"], options)
        problem = judge.check(out, tag, vr, full_photo.originals[tag], code)
        if problem:
            wrong[f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {rows[f'{tag:08x}'].name}"] = problem
    assert not wrong, wrong
    assert len(table_tags()) > 550


@pytest.mark.parametrize("name", sorted(OPTION_SETS))
def test_private_and_repeating_groups_match_their_rows(
    full_photo: PhotoCase, keys: KeyRing, name: str
) -> None:
    options = OPTION_SETS[name]
    plan = MetadataPlan(options=options, safe_private=(f'0013,"{SAFE_CREATOR}",10',))
    out = deidentify(full_photo.fresh(), plan, keys, None)
    private = sorted(e.tag for e in out if e.tag.is_private)
    if Opt.RETAIN_SAFE_PRIVATE in options:  # only the listed safe element and its creator survive
        assert private == [0x00130010, 0x00131010]
    else:
        assert private == []
    assert not [e for e in out if 0x6000 <= e.tag.group <= 0x60FF]  # overlay bitmaps + their text: removed
