"""The surrogate keeps the patient's jaw line on the rungs that do not overshoot on purpose (keep_outline):
a face outline moved towards the donors' changed dlib's HOG box on a third of the London-set outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines import surrogate_synthesis
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings
from anonymizer.faces import pipeline
from anonymizer.faces.detect import detect_faces

RUNG = Strength(1.7, 3.0, 1.0, 0.0, 1.4)  # the ladder's fourth rung: the outline all the way to the donors'


def _outline_moves(bank_path: Path, image: np.ndarray, keep: bool, monkeypatch: pytest.MonkeyPatch) -> float:
    """Mean distance (crop pixels) of the target's jaw line from the patient's, one rung, nothing kept."""
    full_size = tuple(o for o in SurrogateSettings().nothing_kept if o[0] != "preview_rungs")  # the spy reads
    settings = SurrogateSettings(  # the full-size target, not a half-size preview's
        ladder=(RUNG,), donor_sets=1, k=5, k_min=3, keep_outline=keep, nothing_kept=full_size
    )
    engine = SurrogateEngine(settings, load_bank(bank_path))
    records = pipeline._align_all(
        [image], [detect_faces(image)], engine.crop_size, (), pipeline.PipelineSettings()
    )
    targets: list[np.ndarray] = []
    poisson = surrogate_synthesis._poisson

    def spy(synth, face, preserve, landmarks, *rest):  # type: ignore[no-untyped-def]
        targets.append(landmarks)
        return poisson(synth, face, preserve, landmarks, *rest)

    monkeypatch.setattr(surrogate_synthesis, "_poisson", spy)  # looked up where _synthesize lives
    engine.anonymize([records[0].aligned], 5, ())
    patient = records[0].aligned.landmarks
    return float(np.linalg.norm(targets[0][:17] - patient[:17], axis=1).mean())


def test_the_jaw_line_stays_the_patients_on_a_rung_that_does_not_overshoot(
    bank_path: Path, pair: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = _outline_moves(bank_path, pair[0], True, monkeypatch)
    moved = _outline_moves(bank_path, pair[0], False, monkeypatch)
    # the expression and frame steps still nudge every free point a little; the donors' jaw is gone
    assert kept < 0.5 * moved, (kept, moved)
