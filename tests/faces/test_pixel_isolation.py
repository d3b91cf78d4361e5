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
