"""The population (linkage) test of verification: an output that is no closer to its patient than to real
reference faces passes; one whose nearest real face is the patient is quarantined, fail-closed."""

from __future__ import annotations

import numpy as np

from anonymizer.faces.detect import detect_faces
from anonymizer.faces.verify import VerifySettings, closer_than_input, descriptor, distance, verify_face
from tests.faces.conftest import load_rgb


def test_closer_than_input_counts_identities_and_leaves_the_patient_out() -> None:
    before, after = np.zeros(128, np.float32), np.zeros(128, np.float32)
    after[0] = 0.7  # the output is 0.7 from the patient
    near, far, patient_again = after.copy(), after.copy(), before.copy()
    near[1], far[0] = 0.3, 2.0
    reference = [np.stack([far, near]), far[None], patient_again[None]]
    closer, usable = closer_than_input(after, before, reference, same_identity=0.45)
    assert (closer, usable) == (1, 2)  # the patient's own photo in the bank is no reference face


def test_verification_quarantines_an_output_whose_nearest_real_face_is_the_patient() -> None:
    patient, other = load_rgb("017_03"), load_rgb("004_03")  # two real people, more than 0.65 apart
    lm_patient, lm_other = detect_faces(patient)[0].landmarks, detect_faces(other)[0].landmarks
    before, after = descriptor(patient, lm_patient), descriptor(other, lm_other)
    assert distance(before, after) > 0.65
    # The "output" stands in the middle of nowhere: every reference face is farther from it than the patient.
    away = [(after + 5.0 * (after - before))[None]]
    check = verify_face(
        patient, other, lm_patient, VerifySettings(), original_descriptor=before, reference=away
    )
    assert not check.passed and check.reason == "output-links-to-input"
    # With a real face nearer to it than the patient, the attacker's first guess is someone else: it passes.
    near = [after[None] + 0.01, *away]
    check = verify_face(
        patient, other, lm_patient, VerifySettings(), original_descriptor=before, reference=near
    )
    assert check.passed, check.reason
