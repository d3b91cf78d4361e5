"""The kept nose (issue-11n): with the nose kept the engine aims for more real faces nearer to each output
than the patient (a linkage attacker's top guesses are other people) and lets the anti-face move the texture
further from the donor average; every other setting keeps the general values."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_colour import soften
from anonymizer.engines.surrogate_ladder import _Common
from anonymizer.faces import pipeline
from anonymizer.faces.detect import detect_faces
from anonymizer.plans import Region

NOSE_RUNGS = (Strength(2.0, 3.2, 1.0, 1.1, 3.0, 45.0), Strength(2.1, 3.4, 1.0, 1.4, 3.6, 60.0))
TOP = SurrogateSettings().ladder[-1]  # the ladder's strongest rung
NOSE_ON = SurrogateSettings(nose_population_rank=5, nose_rungs=NOSE_RUNGS)


def _common(aim: int | None) -> _Common:
    return _Common(np.zeros((0, 3), int), np.zeros((0, 128)), [], [], ("F", 40.0), population_rank=aim)


def _checks(closer: int) -> list[_Check]:
    return [_Check(0.72, None, closer, 20, None, "F"), _Check(0.74, None, closer + 1, 20, None, "F")]


def test_only_a_kept_nose_raises_the_linkage_aim_and_never_below_the_general_one() -> None:
    engine = SurrogateEngine(NOSE_ON)
    assert engine._group_aim((Region.NOSE,)) == 5
    assert engine._group_aim((Region.NOSE, Region.MOUTH)) == 5
    for other in ((), (Region.MOUTH,), (Region.EYES,)):
        assert engine._group_aim(other) == 3
    assert SurrogateEngine(SurrogateSettings(nose_population_rank=2))._group_aim((Region.NOSE,)) == 3
    # the population test switched off (verification's rank 0) stays off with the nose kept
    off = SurrogateSettings(population_rank=0, nose_population_rank=5)
    assert SurrogateEngine(off)._group_aim((Region.NOSE,)) == 0
    # more donor sets with the nose kept only, never fewer than the general number
    more = SurrogateEngine(SurrogateSettings(nose_donor_sets=9))
    assert more._sets((Region.NOSE,)) == 9 and more._sets((Region.EYES,)) == more._sets(()) == 6
    assert SurrogateEngine(SurrogateSettings(nose_donor_sets=3))._sets((Region.NOSE,)) == 6
    # 0: the kept nose aims like everything else (main's behaviour before issue-11n)
    assert SurrogateEngine(SurrogateSettings(nose_population_rank=0))._group_aim((Region.NOSE,)) == 3


def test_a_rung_with_three_real_faces_nearer_passes_the_general_aim_and_fails_the_noses() -> None:
    engine = SurrogateEngine(NOSE_ON)
    passed, score, far_all, _ = engine._judge(_checks(3), _common(None))
    assert passed and far_all
    passed, score, far_all, _ = engine._judge(_checks(3), _common(5))
    assert not passed and not far_all
    assert engine._near_patient(score, _common(5)) and not engine._near_patient(score, _common(None))
    assert engine._judge(_checks(5), _common(5))[0]


def test_only_a_kept_nose_climbs_the_extra_rungs_and_they_let_the_texture_move_further() -> None:
    engine = SurrogateEngine(NOSE_ON)
    ladder = SurrogateSettings().ladder
    assert engine._rungs((Region.NOSE,)) == ladder + NOSE_RUNGS  # after the ladder's own rungs
    for other in ((), (Region.MOUTH,), (Region.EYES,)):
        assert engine._rungs(other) == ladder
    assert all(rung.soft == 0 for rung in ladder)  # the ladder's own rungs keep soft_limit
    assert SurrogateEngine(SurrogateSettings(nose_rungs=()))._rungs((Region.NOSE,)) == ladder
    average = np.full((8, 8, 3), 120.0, np.float32)
    anti = average + 60.0  # a strong anti-face step: 60 levels of lightness
    moved = {limit: float(soften(anti, average, limit)[0, 0, 0] - 120.0) for limit in (28.0, 45.0)}
    assert moved[28.0] < 28.0 < moved[45.0] < 45.0


def test_a_rung_with_its_own_soft_limit_moves_the_free_face_further_and_keeps_the_nose(
    bank_path: Path, pair: list[np.ndarray]
) -> None:
    """The top rung made twice for a kept nose: with the general soft limit (28) and with a rung's own 60.
    The looser limit lets the anti-face change more of the face around the nose; the nose stays the
    patient's pixels either way."""
    engine = SurrogateEngine(SurrogateSettings(donor_sets=1, k=5, k_min=3), load_bank(bank_path))
    preserve = (Region.NOSE,)
    (record,) = pipeline._align_all(
        pair[:1], [detect_faces(pair[0])[:1]], engine.crop_size, preserve, pipeline.PipelineSettings()
    )
    face = record.aligned
    crops = {}
    for soft in (0.0, 60.0):
        one = (replace(TOP, soft=soft),)
        engine.settings = SurrogateSettings(donor_sets=1, k=5, k_min=3, ladder=one, nose_rungs=())
        crops[soft] = engine.anonymize([face], 5, preserve)[0]
    nose = face.masks[Region.NOSE] > 0.5
    changed = {soft: float(np.abs(c.astype(float) - face.image).mean()) for soft, c in crops.items()}
    assert changed[60.0] > changed[0.0] + 0.25  # 5.69 against 5.24 levels (mean over the crop)
    for crop in crops.values():
        assert np.array_equal(crop[nose], face.image[nose])
