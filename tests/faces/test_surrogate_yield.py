"""Yield with a region kept (issue-11w): the ladder's self-check measures an output against every original of
its group, as verification does, and the best failing attempt prefers one that matches no donor."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_ladder import _Common
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import PipelineSettings, _align_all


def _common() -> _Common:
    return _Common(np.zeros((0, 3), int), np.zeros((0, 128)), [], [], ("F", 40.0))


def _check(away: float, donor: str | None, closer: int) -> _Check:
    return _Check(away, donor, closer, 20, None, "F")


def test_among_failing_rungs_the_donor_free_one_ranks_first_when_on() -> None:
    """Both rungs fail (too few real faces nearer than the patient) and both would verify; the farther one
    is a donor's look-alike. Off, the ranking is the old one (farther first); on, the donor-free rung wins."""
    lookalike = [_check(0.74, "london_087", 2), _check(0.73, None, 2)]
    plain = [_check(0.69, None, 1), _check(0.70, None, 1)]
    for avoid, winner in ((False, lookalike), (True, plain)):
        engine = SurrogateEngine(SurrogateSettings(best_avoids_donors=avoid))
        scores = {id(c): engine._judge(c, _common())[1] for c in (lookalike, plain)}
        assert max((lookalike, plain), key=lambda c: scores[id(c)]) is winner
        assert all(s[0] == 0 and s[1] == 1 for s in scores.values())  # neither passed, both verifiable
    # still below any rung that passed, and no better than one less likely to verify
    engine = SurrogateEngine(SurrogateSettings(best_avoids_donors=True))
    unverifiable = [_check(0.64, None, 0), _check(0.70, None, 1)]
    assert engine._judge(lookalike, _common())[1] > engine._judge(unverifiable, _common())[1]


def test_the_self_check_measures_an_output_against_the_groups_other_photos(
    bank_path: Path, pair: list[np.ndarray]
) -> None:
    """The output of the smiling photo is here the patient's own neutral face: against its own (smiling)
    original it is the same person in another expression; against the neutral original, which verification
    also checks (output-matches-patient-photo), it is that photo. On, the self-check sees the nearer one."""
    bank = load_bank(bank_path)
    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], bank.crop_size, (), PipelineSettings())
    neutral, smiling = records[0].aligned, records[1].aligned
    donors = np.stack([p.descriptor for p in bank.photos])
    aways = {}
    for on in (False, True):
        engine = SurrogateEngine(SurrogateSettings(self_check_group_photos=on), bank)
        others = engine._others([neutral, smiling], smiling)
        assert len(others) == int(on)
        check = engine._distinct(neutral.image, neutral.landmarks, smiling, donors, [], others)
        aways[on] = check.away
    # against the neutral original it is that photo itself (0.03 on 017: crop against photo); against its
    # own, smiling original, the same person in another expression (0.12)
    assert aways[True] < 0.06 and aways[True] < aways[False] - 0.05


def test_the_rank_slack_counts_only_real_faces_clearly_nearer_than_the_patient() -> None:
    """The output lies 0.70 from the patient; one real face 0.69 from it (a shift of the output by 0.01
    between crop and pasted photo can swap the two), another 0.60. Verification's count (no slack) is 2;
    the self-check's with slack 0.02 is 1; the patient-like identity (0.3 from the input) is never counted."""
    from anonymizer.faces.verify import closer_than_input

    basis = np.eye(128, dtype=np.float32)
    after = np.zeros(128, np.float32)
    before = 0.70 * basis[0]
    reference = [0.69 * basis[1][None], 0.60 * basis[2][None], (before + 0.3 * basis[3])[None]]
    assert closer_than_input(after, before, reference, 0.45) == (2, 2)
    assert closer_than_input(after, before, reference, 0.45, 0.02) == (1, 2)
    assert SurrogateSettings().self_check_rank_slack == 0.0  # off by default: the count verification makes


def test_between_rungs_unlikely_to_verify_the_farther_one_stays_first() -> None:
    """Neither rung would verify (under 0.66 from the patient): the farther one, a donor's look-alike, still
    ranks first with best_avoids_donors on (London-set 003, nose kept, verified only through it)."""
    engine = SurrogateEngine(SurrogateSettings(best_avoids_donors=True))
    far = [_check(0.649, "london_025", 0), _check(0.70, None, 0)]
    near = [_check(0.639, None, 0), _check(0.70, None, 0)]
    assert engine._judge(far, _common())[1] > engine._judge(near, _common())[1]


def test_a_fallback_beyond_verifications_distance_ranks_before_more_real_faces_nearer() -> None:
    """Neither rung is likely to verify; one has 3 real faces nearer but lies 0.643 from the patient (within
    verification's 0.65: fails for sure), the other 0.654 with none nearer. On, the second ranks first."""
    within = [_check(0.643, "london_038", 3), _check(0.70, None, 3)]
    beyond = [_check(0.654, None, 0), _check(0.70, None, 0)]
    for on, winner in ((False, within), (True, beyond)):
        engine = SurrogateEngine(SurrogateSettings(best_over_threshold=on))
        first = max((within, beyond), key=lambda c: engine._judge(c, _common())[1])
        assert first is winner
