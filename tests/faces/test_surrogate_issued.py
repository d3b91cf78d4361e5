"""Distinct patients by what was issued (issue-11c9): the ladder passes over a rung that lands within
``issued_distance`` of another patient's issued identity when another rung avoids it, falls back to the
ladder's own pick when none does, never counts the patient's own record, and changes nothing without a
store."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines import surrogate_ladder
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_donors import DonorChoice
from anonymizer.engines.surrogate_ladder import _Avoid, _Common
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import PipelineSettings, _align_all
from anonymizer.issued import MemoryIssued, issued_key
from tests.faces.ladder_fakes import FarPatient as _Face
from tests.faces.ladder_fakes import plain_engine
from tests.faces.ladder_fakes import unit as _unit

RUNGS = 4


def _engine(monkeypatch: pytest.MonkeyPatch, **settings: object) -> SurrogateEngine:
    """An engine whose every rung passes the self-check; rung n's outputs have descriptor ``_unit(n)``."""
    engine = plain_engine(monkeypatch, RUNGS, **settings)

    def synthesize(face, ingredients, tris, preserve, strength, repel, finish=False):
        return np.full((1, 1), strength.texture), np.zeros((68, 2))

    def distinct(crop, target, face, donor_descs, reference, others=()):
        return _Check(1.0, None, 10, 10, _unit(int(crop[0, 0])))

    monkeypatch.setattr(engine, "_synthesize", synthesize)
    monkeypatch.setattr(engine, "_distinct", distinct)
    return engine


def _common(avoid: _Avoid | None = None) -> _Common:
    return _Common(None, np.zeros((1, 128)), [], [None, None], avoid=avoid)  # type: ignore[arg-type]


def _climb(engine: SurrogateEngine, avoid: _Avoid | None) -> surrogate_ladder._Attempt:
    return engine._climb([_Face(), _Face()], DonorChoice(("d1", "d2"), 1), _common(avoid), ())  # type: ignore[list-item]


def test_without_a_store_the_first_passing_rung_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch)
    chosen = _climb(engine, None)
    assert chosen.passed and chosen.level == 0
    assert engine._avoid(123) is None  # no store: no search
    assert engine._avoided(chosen, None) is chosen
    assert len(chosen.outs) == 2 and np.allclose(chosen.outs[0], _unit(0))


def test_a_rung_within_reach_of_an_issued_identity_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch)
    avoid = _Avoid(np.stack([_unit(0) + 0.01, _unit(1)]), reach=0.62, budget=6)  # rungs 0 and 1 are taken
    chosen = _climb(engine, avoid)
    assert chosen.passed and chosen.level == 2
    assert avoid.fallback is not None and avoid.fallback.level == 0  # the ladder's pick without a store
    assert engine._avoided(chosen, avoid) is chosen and engine.last_avoid == "clear +2"


def test_when_no_rung_avoids_them_the_ladder_keeps_its_own_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, issued_fallback="first")
    every = np.stack([_unit(n) for n in range(RUNGS)])
    avoid = _Avoid(every, reach=0.62, budget=6)
    best = _climb(engine, avoid)
    assert not best.passed  # a rung that passed otherwise is never a failure of the photo by itself
    picked = engine._avoided(best, avoid)
    assert picked.level == 0 and engine.last_avoid == "fallback +3"


def test_the_extra_climb_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, issued_fallback="first")
    avoid = _Avoid(np.stack([_unit(0), _unit(1), _unit(2)]), reach=0.62, budget=2)  # rung 3 would avoid
    best = _climb(engine, avoid)
    assert not best.passed and avoid.spent == 2 and avoid.exhausted
    assert engine._avoided(best, avoid).level == 0


def test_the_patients_own_record_never_counts() -> None:
    store = MemoryIssued()
    mine, other, later = issued_key(1), issued_key(2), issued_key(3)
    assert len(store.others(mine)) == 0
    store.record(other, _unit(5))
    store.record(mine, _unit(6))
    store.record(later, _unit(7))
    # a patient already recorded meets only what was issued before them, never themself
    assert np.allclose(store.others(mine), [_unit(5)])
    assert len(store.others(other)) == 0
    assert len(store.others(issued_key(4))) == 3  # a new patient meets everyone


def test_the_store_records_one_identity_per_patient() -> None:
    store = MemoryIssued()
    store.record(issued_key(1), _unit(0))
    store.record(issued_key(1), _unit(1))  # a later study of the same patient
    assert len(store) == 1 and np.allclose(store.others(issued_key(2)), [_unit(0)])
    assert issued_key(1) != issued_key(2) and len(issued_key(1)) == 32  # a hash of the seed


def test_the_engine_searches_only_with_a_store_a_reach_and_others(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, issued_distance=0.62, issued_rungs=3)
    assert engine._avoid(1) is None  # no store
    engine.issued = MemoryIssued()
    engine.issued.record(issued_key(1), _unit(0))
    assert engine._avoid(1) is None  # only the patient's own identity is issued
    engine.issued.record(issued_key(2), _unit(1))
    found = engine._avoid(3)
    assert found is not None and found.reach == 0.62 and found.budget == 3 and len(found.issued) == 2
    off = _engine(monkeypatch)  # issued_distance 0: off even with a store
    off.issued = engine.issued
    assert off._avoid(3) is None


def test_a_store_far_from_everyone_changes_no_pixel_and_records_the_group(
    bank_path: Path, pair: list
) -> None:
    """On the session bank: an issued identity out of every output's reach leaves the crops bit-identical to
    the engine without a store (and the check off), and the group's identity is recorded once, the mean of
    its outputs' descriptors."""
    bank = load_bank(bank_path)
    plain = SurrogateEngine(SurrogateSettings(), bank)
    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], plain.crop_size, (), PipelineSettings())
    faces = [r.aligned for r in records]
    before = plain.anonymize(faces, 7, ())
    engine = SurrogateEngine(SurrogateSettings(issued_distance=0.62), bank)
    engine.issued = MemoryIssued()
    engine.issued.record(issued_key(99), np.full(128, 5.0))  # another patient, far from any face
    after = engine.anonymize(faces, 7, ())
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert engine.last_avoid == "free" and len(engine.issued) == 2
    mine = engine.issued._descriptors[engine.issued._keys[issued_key(7)]]
    assert 0.2 < np.linalg.norm(mine) < 2.0  # a dlib descriptor (unit-ish norm), not the far one
    engine.anonymize(faces, 7, ())  # the same patient again: still one record
    assert len(engine.issued) == 2


def test_the_farthest_fallback_takes_the_rung_least_near_them(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, issued_fallback="farthest")
    taken = np.stack([_unit(0), _unit(1) * 1.3, _unit(2), _unit(3)])  # rung 1 lies 0.3 from its neighbour
    avoid = _Avoid(taken, reach=0.62, budget=6)
    best = _climb(engine, avoid)
    assert not best.passed and avoid.fallback is not None and avoid.fallback.level == 0
    assert engine._avoided(best, avoid).level == 1


@dataclass(frozen=True)
class _Mix:
    shape: np.ndarray  # the only ingredient the fake synthesis reads


def test_a_keyed_shape_step_can_avoid_them_on_the_same_rung(monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``issued_variants`` a passing rung near an issued identity is made again with the patient's
    further keyed shape steps: rung n with step k has descriptor ``_unit(n + 10 k)``."""
    chosen = {}
    for on in (False, True):
        engine = _engine(monkeypatch, issued_variants=on)
        monkeypatch.setattr(engine, "_ingredients", lambda *a, **k: _Mix(np.zeros((68, 2))))

        def synthesize(face, ingredients, tris, preserve, strength, repel, finish=False):
            return np.full((1, 1), strength.texture + 10 * ingredients.shape[0, 0]), np.zeros((68, 2))

        monkeypatch.setattr(engine, "_synthesize", synthesize)
        step = np.zeros((68, 2))
        variants = (step, np.full((68, 2), 1.0), np.full((68, 2), 2.0))
        avoid = _Avoid(np.stack([_unit(0), _unit(10)]), reach=0.62, budget=6)  # rung 0, and with step 1
        common = replace(_common(avoid), spread=(step, np.zeros(1)), shape_variants=variants)  # type: ignore[arg-type]
        attempt = engine._climb([_Face(), _Face()], DonorChoice(("d1", "d2"), 1), common, ())  # type: ignore[list-item]
        chosen[on] = (attempt.level, np.argmax(attempt.outs[0]), avoid.spent)
    assert chosen[False] == (1, 1, 1)  # climbed a rung
    assert chosen[True] == (0, 20, 2)  # the same rung with the second further step (the first is taken)
