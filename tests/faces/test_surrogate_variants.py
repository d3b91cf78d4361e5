"""The patient's further keyed shape steps on a rung read as the other sex (``spread_shape_variants``), with
``spread_variants_verifiable``: a step replaces the rung only when it is likely to verify (issue-11n5,
nose kept: 002's only rungs far enough to verify read as a man, and a step that kept her a woman near her
cost her photo); and the self-check's sex read by both the donors' centroids and the bank's probe
(``sex_reader`` "both")."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.base import AlignedFace
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_donors import apparent_sex
from anonymizer.engines.surrogate_ladder import RungRecipe, _Common, _kept_sex, _sex_lost


@dataclass(frozen=True)
class _Prepared:
    shape: np.ndarray  # what _other_step swaps the step in (Ingredients.shape)


def _check(away: float, closer: int, sex: str) -> _Check:
    return _Check(away, None, closer, 20, np.zeros(128), sex)


STEP = np.zeros(4)
VARIANTS = [np.full(4, float(n)) for n in (1, 2, 3)]


def _engine(outcomes: dict[float, _Check]) -> tuple[SurrogateEngine, _Common]:
    """An engine whose remade rung, for each further step (keyed by its value), gives ``outcomes``' check;
    the judgement is the engine's own."""
    engine = SurrogateEngine(SurrogateSettings(spread_shape_variants=3))

    def remade(faces, recipe, common, preserve):  # type: ignore[no-untyped-def]
        return [None], [outcomes[float(recipe.prepared[0].shape[0])]]

    engine._remade = remade  # type: ignore[method-assign]
    common = _Common(np.zeros((0, 3), int), np.zeros((0, 128)), [], [], ("F", 30.0), shape_variants=VARIANTS)
    return engine, common


def _try(engine: SurrogateEngine, common: _Common, verifiable: float) -> tuple | None:
    face = AlignedFace(np.zeros((4, 4, 3), np.uint8), np.zeros((68, 2), np.float32))
    strength = SurrogateSettings().ladder[0]
    recipe = RungRecipe([_Prepared(STEP)], strength)
    return engine._other_step([face], recipe, STEP, common, (), verifiable)


def test_a_step_that_keeps_the_sex_near_the_patient_is_taken_only_without_the_floor() -> None:
    # two steps keep her a woman but stay within verification's reach (0.62, 0.64), one reads as a man
    near, nearer, man = _check(0.62, 0, "F"), _check(0.64, 0, "F"), _check(0.75, 3, "M")
    engine, common = _engine({1.0: near, 2.0: nearer, 3.0: man})
    found = _try(engine, common, verifiable=0.0)
    assert found is not None and found[1] is VARIANTS[1]  # the farther of the two that keep the sex
    assert not _sex_lost(found[-1][1]) and found[-1][1][1] == 0.0  # kept the sex, not likely to verify
    assert _try(engine, common, verifiable=1.0) is None  # the rung (read as a man, verifiable) stays


def test_a_step_that_keeps_the_sex_and_verifies_is_taken_with_the_floor() -> None:
    near, far, man = _check(0.62, 0, "F"), _check(0.70, 2, "F"), _check(0.75, 3, "M")
    engine, common = _engine({1.0: near, 2.0: far, 3.0: man})
    found = _try(engine, common, verifiable=1.0)
    assert found is not None and found[1] is VARIANTS[1] and found[-1][1][1] == 1.0


def test_the_floor_is_off_in_the_base_settings() -> None:
    assert SurrogateSettings().spread_variants_verifiable is False


def test_both_readers_keep_a_sex_only_when_they_agree(bank_path: Path) -> None:
    """``sex_reader`` "both": the self-check's reading is the donors' centroids' when the bank's probe agrees
    (or has no reading), else "?", which keeps no patient's sex; the patient's own estimate is the
    centroids' alone."""
    engine = SurrogateEngine(SurrogateSettings(sex_reader="both"), load_bank(bank_path))
    woman = next(p for p in engine.bank.photos if apparent_sex(p.descriptor, engine.bank) == "F")
    for probe, reading in (("F", "F"), ("", "F"), ("M", "?")):
        engine._probe_sex = lambda desc, margin, probe=probe: probe  # type: ignore[method-assign]
        assert engine._read_sex(woman.descriptor) == reading
    assert engine._read_sex(woman.descriptor, checking=False) == "F"  # the probe says "M", unasked
    assert _sex_lost((0.0, 1.0, float(_kept_sex([_check(0.7, 2, "?")], "F"))))
