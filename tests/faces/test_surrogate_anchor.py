"""Anchored re-draws: a donor set whose every rung stays near its patient is re-drawn leaning on one donor far
from the patient, so that a real person, not the patient, is the output's nearest face."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_identity import ANCHOR_SHARES, anchor_weights
from anonymizer.evaluation.metrics import output_face
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import run_group
from anonymizer.faces.verify import descriptor, distance
from anonymizer.plans import Region


def test_the_first_donor_set_keeps_its_plain_mix() -> None:
    assert anchor_weights([0.9, 0.7, 0.8], 0) is None
    assert anchor_weights([0.9], 1) is None  # one donor: nothing to lean on


def test_the_anchor_is_a_far_donor_in_the_sets_keyed_order() -> None:
    distances = [0.70, 0.85, 0.65, 0.90]  # donors 1 and 3 are far from the patient
    first, second, third = (anchor_weights(distances, a) for a in (1, 2, 3))
    for w in (first, second, third):
        assert w is not None and np.isclose(w.sum(), 1.0)
    assert first is not None and second is not None and third is not None
    assert int(first.argmax()) == 1 and np.isclose(first.max(), ANCHOR_SHARES[0])
    assert int(second.argmax()) == 3 and np.isclose(second.max(), ANCHOR_SHARES[1])
    assert int(third.argmax()) == 1  # the far donors in turn
    assert np.allclose(np.delete(first, 1), (1 - ANCHOR_SHARES[0]) / 3)  # the rest share evenly


def test_without_far_donors_the_farthest_lead() -> None:
    w = anchor_weights([0.70, 0.75, 0.65], 1)
    assert w is not None and int(w.argmax()) == 1
    w = anchor_weights([0.70, 0.75, 0.65], 2)
    assert w is not None and int(w.argmax()) == 0


def test_the_anchor_is_of_the_patients_tone_when_allowed_donors_are_named() -> None:
    """settings.anchor_tone: only donors of the patient's skin tone anchor a set (a light-skinned patient
    leaning 0.8 on a darker donor kept that donor's shading); none allowed: every donor, as before."""
    distances = [0.85, 0.70, 0.90, 0.75]  # donors 0 and 2 are far; say only 1 and 2 share her tone
    allowed = [False, True, True, False]
    first, second = (anchor_weights(distances, a, allowed) for a in (1, 2))
    assert first is not None and second is not None
    assert int(first.argmax()) == 2 and int(second.argmax()) == 2  # the one far donor of her tone, in turn
    near = anchor_weights(distances, 1, [False, True, False, True])  # no far donor of her tone
    assert near is not None and int(near.argmax()) == 3  # the farthest of her tone
    every = anchor_weights(distances, 1, [False] * 4)
    plain = anchor_weights(distances, 1)
    assert every is not None and plain is not None and np.array_equal(every, plain)


def test_patients_sharing_donors_lean_on_different_ones() -> None:
    """Two patients drawing the same far donors in different keyed orders get different anchors, so two
    patients rescued by anchoring do not both become the same donor's look-alike."""
    donors = np.array([0.9, 0.85, 0.88, 0.6, 0.7])
    one, other = np.array([0, 1, 2, 3, 4]), np.array([2, 4, 0, 3, 1])  # the two patients' keyed orders
    a, b = anchor_weights(list(donors[one]), 1), anchor_weights(list(donors[other]), 1)
    assert a is not None and b is not None
    assert one[a.argmax()] != other[b.argmax()]


def test_a_group_split_into_two_people_fails_the_self_check() -> None:
    """One patient, one person: a rung whose outputs of one group lie further apart than the pair distance
    does not pass (an anchored set once made a patient's neutral and smiling photo two people, 0.61 apart)."""
    engine = SurrogateEngine(SurrogateSettings(self_check_pair_distance=0.55))
    rng = np.random.default_rng(0)
    base = rng.normal(size=128)
    base /= np.linalg.norm(base)
    step = rng.normal(size=128)
    step -= step.dot(base) * base
    step /= np.linalg.norm(step)

    def check(offset: float) -> _Check:
        return _Check(0.8, None, 3, 3, base + offset * step)

    assert engine._one_person([check(0.0), check(0.5)])  # 0.5 apart: one person
    assert not engine._one_person([check(0.0), check(0.3), check(0.6)])  # the first and last are 0.6 apart
    assert engine._one_person([check(0.0), _Check(float("inf"), None, 0, 0)])  # a face without descriptor
    assert SurrogateEngine(SurrogateSettings(self_check_pair_distance=0))._one_person([check(0), check(1)])


QUICK = (Strength(1.15, 1.6, 0.35, 0.0, 0.5), Strength(2.1, 3.4, 1.0, 1.4, 3.6))  # the ladder's ends
# the ladder alone (issue-11n's nose levers off; no shape_bound second pass, issue-11n9, which rescues it too)
PLAIN_NOSE = {"nose_rungs": (), "nose_population_rank": 0, "nose_kept": (("anti_beard", 0.0),)}


@pytest.fixture(scope="module")
def nose_kept(wide_donor_bank: Path, pair: list[np.ndarray]) -> tuple[list, list]:
    """The test patient (017, a man close to many of the bank's donors) with the nose kept, through the real
    pipeline and verification (population test in force), once with plain donor sets only and once with an
    anchored re-draw after the plain set. Identity seed 1 is one whose plain sets stay near him (of seeds 1,
    2, 3 and the bench's, the plain re-draw rescued the others; the anchored one reached 0.68-0.77 on all).
    The keyed spread is off here: with it (the default) the plain sets already pass for seed 1."""
    bank = load_bank(wide_donor_bank)
    detections = [detect_faces(p)[:1] for p in pair]
    out = []
    for anchored in (False, True):
        settings = SurrogateSettings(
            ladder=QUICK, donor_sets=2, anchored_redraws=anchored, spread_shape=0.0, **PLAIN_NOSE
        )
        engine = SurrogateEngine(settings, bank)
        out.append(run_group(pair, engine, 1, (Region.NOSE,), detections=detections))
    return out[0], out[1]


def test_a_nose_kept_photo_quarantined_by_plain_donor_sets_passes_with_an_anchored_one(nose_kept) -> None:
    plain, anchored = nose_kept
    assert not all(r.ok for r in plain), [r.reason for r in plain]  # near the patient: quarantined
    near = {"output-matches-input", "output-matches-patient-photo", "output-links-to-input"}
    assert {r.reason for r in plain if r.reason} <= near
    assert all(r.ok for r in anchored), [r.reason for r in anchored]
    for result in anchored:  # verified against its input with a real face nearer than the patient
        check = result.faces[0].check
        assert check is not None and check.passed and check.distance > 0.65


def test_an_anchored_group_stays_one_person(nose_kept, pair: list[np.ndarray]) -> None:
    """Both photos of the patient come out as one synthetic person under the anchored re-draw."""
    _, anchored = nose_kept
    outs = []
    for photo, result in zip(pair, anchored, strict=True):
        landmarks, _ = output_face(result.image, detect_faces(photo)[0].landmarks)
        outs.append(descriptor(result.image, landmarks))
    assert distance(outs[0], outs[1]) < 0.6
