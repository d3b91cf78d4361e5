"""The pre-OCR filter: every line OCR would confirm is still read, most hair goes unread, the outcome on a
label card equals the unfiltered step's, and altered weights are refused (the text check cannot run)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymizer.evaluation.canary_text import CanaryKind
from anonymizer.plans import TextPlan
from anonymizer.text import filter as text_filter
from anonymizer.text.detect import Proposal, propose
from anonymizer.text.ocr import OcrUnavailable
from anonymizer.text.step import TextSettings, _read, _worth_reading, scrub
from tests.conftest import FACES
from tests.text.conftest import card_photo

pytestmark = pytest.mark.usefixtures("tessdata_ok")
FILTERED, UNFILTERED = TextSettings(), TextSettings(prefilter=False)


def _face(photo_id: str = "001_03") -> np.ndarray:
    path = FACES / f"{photo_id}.jpg"
    if not path.is_file():
        pytest.skip(f"London Set photo {path.name} not in ../shared/data")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("seed", [2, 4])
def test_every_line_ocr_confirms_is_still_read(seed: int) -> None:
    """Cards, wristbands, overlays, date stamps and writing on a background: a line the unfiltered step
    confirms as text is never left unread by the filter."""
    kinds = (CanaryKind.CARD, CanaryKind.WRISTBAND, CanaryKind.OVERLAY, CanaryKind.DATESTAMP, CanaryKind.SKIN)
    photo, _ = card_photo(seed=seed, kinds=kinds, size=(1200, 1600))
    confirmed = [p for p in propose(photo) if _read(photo, p, None, UNFILTERED).text]
    assert len(confirmed) >= 4  # the canaries are there to be found
    assert [p for p in confirmed if not _worth_reading(photo, p, FILTERED)] == []


def test_most_hair_and_face_proposals_go_unread() -> None:
    photo = _face()
    proposals = propose(photo)
    assert len(proposals) >= 10  # hair, eyes, eyebrows
    unread = [p for p in proposals if not _worth_reading(photo, p, FILTERED)]
    assert len(unread) >= 0.6 * len(proposals)
    assert all(not _read(photo, p, None, UNFILTERED).text for p in unread)


def test_a_label_card_comes_out_as_without_the_filter() -> None:
    photo, _ = card_photo(seed=3, kinds=(CanaryKind.CARD, CanaryKind.DATESTAMP, CanaryKind.WRISTBAND))
    filtered = scrub(photo, TextPlan(), settings=FILTERED)
    reference = scrub(photo, TextPlan(), settings=UNFILTERED)
    assert filtered.ok and reference.ok and reference.report.redacted >= 3
    assert filtered.report == reference.report
    assert filtered.image is not None and reference.image is not None
    assert np.array_equal(filtered.image, reference.image)


def test_a_look_too_coarse_for_small_type_is_always_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tall block of large glyphs is shrunk to the look's pixel budget, where 12 px type would vanish."""
    photo = np.full((1200, 1600, 3), 200, np.uint8)
    monkeypatch.setattr(text_filter.TextFilter, "passes", lambda self, crop: False)
    fine = Proposal((800.0, 600.0), (300.0, 40.0), 0.0, 30.0)
    coarse = Proposal((800.0, 600.0), (900.0, 500.0), 0.0, 120.0)
    assert not _worth_reading(photo, fine, FILTERED)
    assert _worth_reading(photo, coarse, FILTERED)
    assert _worth_reading(photo, fine, replace(FILTERED, prefilter=False))


def test_altered_or_missing_weights_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / text_filter.WEIGHTS.name
    shutil.copy(text_filter.WEIGHTS, weights)
    shutil.copy(text_filter.WEIGHTS.with_suffix(".json"), weights.with_suffix(".json"))
    assert text_filter.load(weights).threshold == text_filter.load().threshold  # a faithful copy loads
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(OcrUnavailable, match="sha256"):
        text_filter._read(weights)
    with pytest.raises(OcrUnavailable, match="not found"):
        text_filter._read(tmp_path / "missing.safetensors")
