"""Fail-closed paths of the pixel stage: no face, verification failure, missing donor bank, bad pixels."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from anonymizer import codec, pixel_stage
from anonymizer.engines.base import AlignedFace, register
from anonymizer.outcomes import Ok, Quarantine
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset, rgb_to_dataset
from anonymizer.plans import NoFaceAction, PixelMode, PixelPlan, Region
from tests.faces.conftest import TEST_IDS, london


class _Identity:
    """A broken engine that returns the faces unchanged: verification must catch it."""

    name = "identity-test"
    crop_size = 256
    produces_face = True

    def anonymize(
        self, faces: Sequence[AlignedFace], identity_seed: int, preserve: tuple[Region, ...]
    ) -> list:
        return [f.image.copy() for f in faces]


register("identity-test")(lambda options: _Identity())


@pytest.fixture(autouse=True)
def _bank(bank_path: Path) -> Iterator[None]:
    pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=bank_path))
    yield
    pixel_stage.configure(pixel_stage.PixelSettings())


def _photo() -> Any:
    path = london(f"{TEST_IDS[1]}_03")
    return jpeg_to_dataset(path.read_bytes(), PhotoContext("PAT-FC"))


def _no_face() -> Any:
    y, x = np.mgrid[0:240, 0:320]
    return rgb_to_dataset(np.stack([x % 256, y % 256, (x * y) % 256], -1).astype(np.uint8), PhotoContext("P"))


def test_no_face_is_quarantined() -> None:
    (outcome,) = pixel_stage.anonymize_group([_no_face()], PixelPlan(), 7)
    assert outcome == Quarantine("no-face-found")


def test_no_face_with_mask_rule_blanks_the_frame() -> None:
    (outcome,) = pixel_stage.anonymize_group([_no_face()], PixelPlan(no_face=NoFaceAction.MASK), 7)
    assert isinstance(outcome, Ok) and outcome.report is not None
    assert outcome.report.engine == "mask" and outcome.report.faces_found == 0
    assert np.all(codec.decode(outcome.dataset)[0] == 128)


def test_verification_failure_is_quarantined_and_fallback_engine_rescues() -> None:
    ds = _photo()
    (outcome,) = pixel_stage.anonymize_group([ds], PixelPlan(engine="identity-test"), 7)
    assert outcome == Quarantine("output-matches-input")
    plan = PixelPlan(engine="identity-test", fallback_engine="mask")
    (rescued,) = pixel_stage.anonymize_group([ds], plan, 7)
    assert isinstance(rescued, Ok) and rescued.report is not None and rescued.report.engine == "mask"


def test_missing_donor_bank_quarantines_every_photo(tmp_path: Path) -> None:
    pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=tmp_path / "absent.npz"))
    outcomes = pixel_stage.anonymize_group([_photo(), _no_face()], PixelPlan(), 7)
    assert outcomes == [Quarantine("pixel-engine-unavailable:surrogate")] * 2


def test_undecodable_photo_is_quarantined_alone() -> None:
    bad = _no_face()
    bad.PixelData = b"\x01\x02"
    outcomes = pixel_stage.anonymize_group([bad, _no_face()], PixelPlan(no_face=NoFaceAction.MASK), 7)
    assert isinstance(outcomes[0], Quarantine) and outcomes[0].reason.startswith("undecodable")
    assert isinstance(outcomes[1], Ok)


def test_blank_and_passthrough_modes() -> None:
    ds = _no_face()
    (blank,) = pixel_stage.anonymize_group([ds], PixelPlan(mode=PixelMode.BLANK), 7)
    assert isinstance(blank, Ok) and not codec.decode(blank.dataset)[0].any()
    assert codec.decode(ds)[0].any()  # the input dataset is not modified
    (passed,) = pixel_stage.anonymize_group([ds], PixelPlan(mode=PixelMode.PASSTHROUGH), 7)
    assert isinstance(passed, Ok) and passed.dataset is ds
