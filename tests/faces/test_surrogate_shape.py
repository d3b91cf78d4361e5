"""The surrogate's target shape: the free mouth and eyes follow the patient's expression, and no warp
triangle folds over (a fold smears texture into a streak)."""

from __future__ import annotations

import numpy as np

from anonymizer.engines.surrogate import Strength, _signed_areas, _target_shape, _without_folds
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.warp import extended, triangulate
from anonymizer.plans import Region
from tests.faces.conftest import load_rgb

SIZE = 256


def _real_face() -> np.ndarray:
    """A real face's 68 landmarks in the canonical crop."""
    landmarks = detect_faces(load_rgb("017_03"))[0].landmarks
    return align.apply(align.canonical_alignment(landmarks, SIZE).matrix, landmarks)


def test_a_folding_target_is_pulled_back_until_no_triangle_flips() -> None:
    face = _real_face()
    tris = triangulate(extended(face, SIZE))
    target = face.copy()
    target[36:42] += [60.0, 0.0]  # the right eye thrown across the nose: triangles fold
    before = _signed_areas(extended(face, SIZE), tris)
    assert np.any(_signed_areas(extended(target, SIZE), tris) * np.sign(before) <= 0)
    fixed = _without_folds(target, face, face, tris, SIZE)
    assert np.all(_signed_areas(extended(fixed, SIZE), tris) * np.sign(before) > 0)
    assert np.abs(fixed - face).max() > 1.0  # pulled back, not reset


def width(landmarks: np.ndarray) -> float:
    return float(landmarks[54, 0] - landmarks[48, 0])


def test_free_mouth_follows_the_patients_smile_and_kept_mouth_stays() -> None:
    patient, donor = _real_face(), _real_face()
    centre = patient[48:68, 0].mean()
    patient[48:68, 0] = centre + 1.4 * (patient[48:68, 0] - centre)  # the patient smiles: a wider mouth
    strength = Strength(1.0, 1.0, 0.0)
    free = _target_shape(patient, donor, (), 1.0, strength, expression_follow=0.6)
    still = _target_shape(patient, donor, (), 1.0, strength, expression_follow=0.0)
    kept = _target_shape(patient, donor, (Region.MOUTH,), 1.0, strength, expression_follow=0.6)
    assert width(still) < width(free) < width(patient)
    assert width(free) > width(donor) + 0.5 * (width(patient) - width(donor))
    assert np.allclose(kept[48:68], patient[48:68])
