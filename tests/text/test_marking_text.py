"""The header says what the text step did: BurnedInAnnotation NO only when checked and clean, 113101, and a
De-identification Method value with counts; a sender's YES is never turned into NO."""

from __future__ import annotations

import numpy as np
import pytest

from anonymizer.keys import KeyRing
from anonymizer.metadata import BurnedInAnnotationError, deidentify
from anonymizer.photo_dicom import PhotoContext, rgb_to_dataset
from anonymizer.plans import MetadataPlan, PixelReport, TextAction, TextReport

KEYS = KeyRing(b"k" * 32)


def _ds(burned_in: str | None = None) -> object:
    ds = rgb_to_dataset(np.zeros((8, 8, 3), np.uint8), PhotoContext("PAT-MARK", "Doe^Jane"))
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    return ds


def _report(text: TextReport | None) -> PixelReport:
    return PixelReport(1, True, "surrogate", text=text)


def _codes(ds: object) -> list[str]:
    return [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]  # type: ignore[attr-defined]


def test_checked_clean_photo_says_no_burned_in_annotation_and_clean_pixel_data() -> None:
    text = TextReport(TextAction.REDACT, checked=True, found=2, redacted=3, boxes=((1, 2, 3, 4),))
    out = deidentify(_ds("NO"), MetadataPlan(), KEYS, _report(text))
    assert out.BurnedInAnnotation == "NO" and "113101" in _codes(out)
    assert "text redact: checked, 3 redacted, 0 kept" in out.DeidentificationMethod


def test_unchecked_text_says_yes() -> None:
    out = deidentify(_ds(), MetadataPlan(), KEYS, _report(TextReport(TextAction.KEEP, checked=False)))
    assert out.BurnedInAnnotation == "YES" and "113101" not in _codes(out)
    assert "text keep: not checked" in out.DeidentificationMethod


def test_a_senders_yes_is_still_refused_and_never_becomes_no() -> None:
    clean = _report(TextReport(TextAction.REDACT, checked=True))
    with pytest.raises(BurnedInAnnotationError):
        deidentify(_ds("YES"), MetadataPlan(), KEYS, clean)
    allowed = deidentify(_ds("YES"), MetadataPlan(allow_burned_in_annotation=True), KEYS, clean)
    assert allowed.BurnedInAnnotation == "YES"


def test_no_pixel_report_leaves_the_flag_as_sent() -> None:
    assert deidentify(_ds("NO"), MetadataPlan(), KEYS, None).BurnedInAnnotation == "NO"
