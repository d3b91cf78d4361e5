"""The text step inside the pixel stage: after the face step on face photos, alone on passthrough routes;
the header then says what was checked. Text over a preserved region and a broken OCR install hold photos."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anonymizer import codec, pixel_stage
from anonymizer.evaluation.canary_text import Canary, readable_tokens
from anonymizer.faces.detect import detect_faces
from anonymizer.keys import KeyRing
from anonymizer.metadata import deidentify
from anonymizer.outcomes import Ok, Quarantine
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset
from anonymizer.plans import MetadataPlan, PixelMode, PixelPlan, Region
from tests.conftest import FACES, TEST_FACE_IDS
from tests.text.conftest import card_photo, name_card

pytestmark = pytest.mark.usefixtures("tessdata_ok")


@pytest.fixture(autouse=True)
def _bank(donor_bank: Path) -> Iterator[None]:
    pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=donor_bank))
    yield
    pixel_stage.configure(pixel_stage.PixelSettings())


def _dataset(rgb: np.ndarray) -> object:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=95)
    return jpeg_to_dataset(buf.getvalue(), PhotoContext("PAT-TXT", "Doe^Jane"))


def _face() -> np.ndarray:
    path = FACES / f"{TEST_FACE_IDS[1]}_03.jpg"
    if not path.is_file():
        pytest.skip("../shared/data/faces/london_set is not present")
    return np.asarray(Image.open(path).convert("RGB"))


def _pixels(outcome: Ok) -> np.ndarray:
    return codec.decode(outcome.dataset)[0]


def _unreadable(image: np.ndarray, canary: Canary) -> bool:
    return readable_tokens(image, canary) == set()


def test_face_photo_with_a_card_forwards_with_face_replaced_and_card_filled() -> None:
    photo, card = name_card(_face(), (1080, 1210), ("DOE, JANE", "MRN 00471155", "DOB 02.01.1980"), cap=30)
    assert len(readable_tokens(photo, card)) >= 5
    plan = PixelPlan(preserve=(Region.MOUTH,))
    (outcome,) = pixel_stage.anonymize_group([_dataset(photo)], plan, 11)
    assert isinstance(outcome, Ok), outcome
    report = outcome.report
    assert report is not None and report.faces_replaced_and_verified
    assert report.text is not None and report.text.clean and report.text.redacted >= 3
    assert _unreadable(_pixels(outcome), card)
    out = deidentify(outcome.dataset, MetadataPlan(), KeyRing(b"k" * 32), report)
    assert out.BurnedInAnnotation == "NO"
    assert "113101" in [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert any(v.startswith("text redact: checked") for v in out.DeidentificationMethod)


def test_text_over_the_mouth_with_preserve_mouth_is_quarantined() -> None:
    face = _face()
    (det,) = detect_faces(face)
    mouth = det.landmarks[48:68].mean(0).astype(int)
    photo, _ = name_card(face, (int(mouth[0]) + 40, int(mouth[1]) + 10), ("MRN 00471155",), cap=18)
    (outcome,) = pixel_stage.anonymize_group([_dataset(photo)], PixelPlan(preserve=(Region.MOUTH,)), 11)
    assert outcome == Quarantine("text-over-preserved-region")


def test_close_up_without_face_on_a_passthrough_route_is_checked_for_text() -> None:
    photo, canaries = card_photo(seed=3)
    plan = PixelPlan(mode=PixelMode.PASSTHROUGH)
    ds = _dataset(photo)
    (outcome,) = pixel_stage.anonymize_group([ds], plan, 5)
    assert isinstance(outcome, Ok) and outcome.report is not None and outcome.report.text is not None
    assert outcome.report.text.redacted >= 1 and outcome.dataset is not ds
    assert _unreadable(_pixels(outcome), canaries[0])
    clean = _dataset(card_photo(seed=5, kinds=())[0])
    (untouched,) = pixel_stage.anonymize_group([clean], plan, 5)
    assert isinstance(untouched, Ok) and untouched.dataset is clean  # nothing filled: bytes kept as sent
    assert untouched.report is not None and untouched.report.text is not None
    assert untouched.report.text.clean


def test_broken_ocr_install_quarantines_every_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path))
    close_up = _dataset(card_photo(seed=5, kinds=())[0])  # no text at all: still never passed unchecked
    (outcome,) = pixel_stage.anonymize_group([close_up], PixelPlan(mode=PixelMode.PASSTHROUGH), 5)
    assert outcome == Quarantine("ocr-unavailable")
    (face,) = pixel_stage.anonymize_group([_dataset(_face())], PixelPlan(), 5)
    assert face == Quarantine("ocr-unavailable")
