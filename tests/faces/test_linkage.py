"""The population (linkage) test of verification: an output that is no closer to its patient than to real
reference faces passes; one whose nearest real face is the patient is quarantined, fail-closed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.faces.detect import detect_faces
from anonymizer.faces.verify import VerifySettings, closer_than_input, descriptor, distance, verify_face
from anonymizer.pixel_stage import _aims, pipeline_settings
from anonymizer.plans import PixelPlan
from dicom_rules import RulesError, load_rules
from tests.faces.conftest import load_rgb
from tests.rules.conftest import photo_dataset


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


RULES = """\
version: 1
destinations:
  pacs: {{ae_title: PACS, host: 127.0.0.1, port: 11112}}
routes:
  - name: all
    pixels: {{preserve: [nose]{verify}}}
    to: pacs
"""


def _plan(tmp_path: Path, verify: str) -> PixelPlan:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES.format(verify=verify))
    return load_rules(path).decide(photo_dataset()).pixels


@pytest.mark.parametrize(("verify", "rank", "aim"), [("", 1, None), (", verify: {population_rank: 0}", 0, 0),
                                                      (", verify: {population_rank: 5}", 5, 5)])
def test_rule_file_population_rank_reaches_verification_and_the_engine(
    tmp_path: Path, verify: str, rank: int, aim: int | None
) -> None:
    plan = _plan(tmp_path, verify)
    assert plan.population_rank == rank
    assert pipeline_settings(plan).verify.population_rank == rank
    assert _aims(plan).get("population_rank") == aim  # the surrogate's own target follows (default: its 3)
    # the settings the pixel stage hands to run_group decide a real verification
    patient, other = load_rgb("017_03"), load_rgb("004_03")
    lm_patient, lm_other = detect_faces(patient)[0].landmarks, detect_faces(other)[0].landmarks
    before, after = descriptor(patient, lm_patient), descriptor(other, lm_other)
    away = [(after + 5.0 * (after - before))[None] + i for i in range(6)]  # all farther than the patient
    check = verify_face(patient, other, lm_patient, pipeline_settings(plan).verify,
                        original_descriptor=before, reference=away)
    assert check.passed is (rank == 0), check.reason


def test_negative_population_rank_is_a_rule_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="population_rank"):
        _plan(tmp_path, ", verify: {population_rank: -1}")


def test_verification_quarantines_an_output_that_matches_the_patients_other_photo() -> None:
    # 017_03 and 017_08 are one man, neutral and smiling; 004_03 is someone else. The output checked here is
    # the man's neutral face, standing for a synthetic face that drifted back to him. Its own input is taken
    # to be the stranger, so the own-input test passes it; his smiling photo in the same group catches it.
    neutral, smiling, stranger = load_rgb("017_03"), load_rgb("017_08"), load_rgb("004_03")
    lm_neutral = detect_faces(neutral)[0].landmarks
    own_input = descriptor(stranger, detect_faces(stranger)[0].landmarks)
    his_other_photo = descriptor(smiling, detect_faces(smiling)[0].landmarks)
    check = verify_face(neutral, neutral, lm_neutral, VerifySettings(), original_descriptor=own_input)
    assert check.passed, check.reason
    check = verify_face(
        neutral, neutral, lm_neutral, VerifySettings(), original_descriptor=own_input,
        group_originals=[his_other_photo],
    )
    assert not check.passed and check.reason == "output-matches-patient-photo"
