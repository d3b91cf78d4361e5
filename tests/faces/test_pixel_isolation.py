"""Per-photo isolation in the pixel stage: one photo that makes the pipeline raise is quarantined with its own
reason; the other photos of the group are anonymized together (pairing falls back to the remaining ones)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from anonymizer import pixel_stage
from anonymizer.outcomes import Ok, Quarantine
from anonymizer.photo_dicom import PhotoContext, jpeg_to_dataset, rgb_to_dataset
from anonymizer.plans import PixelPlan
from tests.faces.conftest import TEST_IDS, london


@pytest.fixture(autouse=True)
def _bank(bank_path: Path) -> Iterator[None]:
    pixel_stage.configure(pixel_stage.PixelSettings(donor_bank=bank_path))
    yield
    pixel_stage.configure(pixel_stage.PixelSettings())


def test_a_tiny_image_next_to_two_face_photos_quarantines_only_itself() -> None:
    context = PhotoContext("PAT-ISO")
    faces = [jpeg_to_dataset(london(f"{TEST_IDS[1]}_{e}").read_bytes(), context) for e in ("03", "08")]
    tiny = rgb_to_dataset(np.random.default_rng(3).integers(0, 255, (32, 32, 3), dtype=np.uint8), context)
    outcomes = pixel_stage.anonymize_group([faces[0], tiny, faces[1]], PixelPlan(), 7)
    assert isinstance(outcomes[0], Ok) and isinstance(outcomes[2], Ok)
    assert isinstance(outcomes[1], Quarantine) and outcomes[1].reason != "pixel-stage-error"
    alone = pixel_stage.anonymize_group(faces, PixelPlan(), 7)  # the pair, without the tiny image
    assert [o.report.engine for o in outcomes[::2]] == [o.report.engine for o in alone]  # type: ignore[union-attr]


def test_header_sex_and_age_reach_the_engine_and_the_report_names_rung_and_margin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pixel stage hands PatientSex/PatientAge to the face pipeline (they outrank the descriptor's
    guess) and reports the verification margin and the engine's strength rung (the console's study trail)."""
    seen: list[object] = []
    real = pixel_stage.run_group

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(kwargs.get("attributes"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pixel_stage, "run_group", spy)
    context = PhotoContext("PAT-ATTR", patient_sex="F", patient_age="067Y")
    photo = jpeg_to_dataset(london(f"{TEST_IDS[1]}_03").read_bytes(), context)
    (outcome,) = pixel_stage.anonymize_group([photo], PixelPlan(), 11)
    assert [(a.sex, a.age) for a in seen[0]] == [("F", 67)]  # type: ignore[union-attr]
    assert isinstance(outcome, Ok)
    scores = outcome.report.scores
    assert scores["margin"] == pytest.approx(scores["min_identity_distance"] - 0.65)
    assert scores["margin"] > 0 and scores["rung"] >= 0
