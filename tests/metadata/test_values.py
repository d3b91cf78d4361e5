"""Value rules per VR: dummies are valid for their VR, shifts keep precision, bad values fail closed."""

from __future__ import annotations

import pytest
from pydicom import config
from pydicom.valuerep import validate_value

from anonymizer.metadata.values import (
    CLEAN_VOCABULARY,
    DUMMY_TEXT,
    clean_text,
    coerce,
    dummy_value,
    shift_value,
)


@pytest.mark.parametrize("vr", sorted(DUMMY_TEXT))
def test_dummy_text_values_are_valid_and_non_empty_for_their_vr(vr: str) -> None:
    value = dummy_value(vr)
    assert value
    validate_value(vr, value, config.RAISE)


@pytest.mark.parametrize(
    ("vr", "value", "days", "seconds", "expected"),
    [
        ("DA", "20240312", -30, 0, "20240211"),
        ("DA", "20240312\\20240101", -1, 0, "20240311\\20231231"),
        ("DA", "2024-03-12", -1, 0, ""),  # not a DA: emptied, never passed through
        ("DT", "20240312101530.123456+0100", -1, 0, "20240311101530.123456+0100"),
        ("DT", "202403", -40, 0, "202401"),  # precision kept (March 1st - 40 days)
        ("DT", "20240312233000", 0, 3600, "20240313003000"),  # time shift carries into the date
        ("TM", "101530.5", 0, 3600, "111530.5"),
        ("TM", "2330", 0, 3600, "0030"),
        ("TM", "25xx", 0, 60, ""),
    ],
)
def test_shift_keeps_precision_and_fails_closed(
    vr: str, value: str, days: int, seconds: int, expected: str
) -> None:
    assert shift_value(vr, value, days, seconds) == expected


def test_clean_keeps_only_vocabulary_words_and_short_numbers() -> None:
    assert (
        clean_text("Pre-op frontal SMILE John Smith 2019 MRN123456 view 3", CLEAN_VOCABULARY)
        == "Pre op frontal SMILE view 3"
    )
    assert clean_text("lateral\\Dr Who", CLEAN_VOCABULARY) == "lateral\\"


def test_coerce_rejects_values_the_vr_cannot_hold() -> None:
    assert coerce("US", "12") == 12 and coerce("DS", "1.5") == "1.5"
    for vr, text in (("US", "x"), ("IS", "1.5"), ("SH", "x" * 17), ("DA", "March"), ("SQ", "x")):
        with pytest.raises(ValueError):
            coerce(vr, text)
