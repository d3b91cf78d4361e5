"""Distinct patients by the cloud's width (issue-11c10, ``spread_pick``): a passing rung is made again with
the patient's further keyed shape steps, and of those that pass the same self-check the one farthest from
the synthetic cloud's centre of the patient's sex is used; the centre is the bank's own (its identities'
synthetic outputs, the patient's never), and off the rung is kept as it is."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from anonymizer.engines import surrogate_ladder
from anonymizer.engines.surrogate import SurrogateEngine, _Check
from anonymizer.engines.surrogate_cloud import cloud_centre, reach
from anonymizer.engines.surrogate_donors import DonorChoice
from anonymizer.engines.surrogate_ladder import _Common
from tests.faces.ladder_fakes import FarPatient as _Face
from tests.faces.ladder_fakes import plain_engine
from tests.faces.ladder_fakes import unit as _unit


@dataclass(frozen=True)
class _Mix:
    shape: np.ndarray  # the only ingredient the fake synthesis reads


# rung 0's outputs lie at _unit(0), with further step k at _unit(10 k): 0.32, 0.45 and 0.55 from the centre
CENTRE = 0.4 * _unit(0) + 0.2 * _unit(10)
STEPS = (np.zeros((68, 2)), np.full((68, 2), 1.0), np.full((68, 2), 2.0))


def _engine(monkeypatch: pytest.MonkeyPatch, failing: int = -1, **settings: object) -> SurrogateEngine:
    """An engine whose every rung passes the self-check except outputs ``_unit(failing)`` (they match a
    donor); rung n made with step k has descriptor ``_unit(n + 10 k)``. Counts the faces it makes."""
    engine = plain_engine(monkeypatch, 3, _Mix(np.zeros((68, 2))), **settings)
    engine._clouds["F"] = CENTRE
    engine.made = 0  # type: ignore[attr-defined]

    def synthesize(face, ingredients, tris, preserve, strength, repel, finish=False):
        engine.made += 1  # type: ignore[attr-defined]
        return np.full((1, 1), strength.texture + 10 * ingredients.shape[0, 0]), np.zeros((68, 2))

    def distinct(crop, target, face, donor_descs, reference, others=()):
        n = int(crop[0, 0])
        return _Check(1.0, "d1" if n == failing else None, 10, 10, _unit(n))

    monkeypatch.setattr(engine, "_synthesize", synthesize)
    monkeypatch.setattr(engine, "_distinct", distinct)
    return engine


def _climb(engine: SurrogateEngine) -> surrogate_ladder._Attempt:
    common = _Common(None, np.zeros((1, 128)), [], [None, None], profile=("F", 40.0))  # type: ignore[arg-type]
    common = replace(common, spread=(STEPS[0], np.zeros(1)), shape_variants=STEPS)  # type: ignore[arg-type]
    return engine._climb([_Face(), _Face()], DonorChoice(("d1", "d2"), 1), common, ())  # type: ignore[list-item]


def _picked(attempt: surrogate_ladder._Attempt) -> int:
    return int(np.argmax(attempt.outs[0]))


def test_off_the_passing_rung_is_kept_and_nothing_is_remade(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch)
    chosen = _climb(engine)
    assert chosen.passed and chosen.level == 0 and _picked(chosen) == 0
    assert engine.made == 2 and engine.last_pick == ""  # type: ignore[attr-defined]


def test_the_step_farthest_from_the_centre_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, spread_pick=2)
    chosen = _climb(engine)
    assert chosen.passed and chosen.level == 0 and _picked(chosen) == 20
    assert reach(chosen.outs, CENTRE) == pytest.approx(np.linalg.norm(_unit(20) - CENTRE))
    assert chosen.remake is not None  # the finish remakes it
    assert np.all(chosen.remake.prepared[0].shape == 2.0)
    assert engine.made == 6 and engine.last_pick == "2/2 moved"  # type: ignore[attr-defined]


def test_a_step_that_fails_the_self_check_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, failing=20, spread_pick=2)
    chosen = _climb(engine)
    assert chosen.passed and _picked(chosen) == 10  # the farthest one matched a donor
    assert engine.last_pick == "1/2 moved"


def test_the_steps_tried_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, spread_pick=1)
    chosen = _climb(engine)
    assert _picked(chosen) == 10 and engine.made == 4  # type: ignore[attr-defined]


def test_no_step_lies_farther_keeps_the_rung(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(monkeypatch, spread_pick=2)
    engine._clouds["F"] = 0.3 * _unit(10) + 0.3 * _unit(20)  # both steps lie nearer than the rung
    assert _picked(_climb(engine)) == 0 and engine.last_pick == "2/2 kept"


def _photo(identity: str, sex: str, value: float) -> SimpleNamespace:
    return SimpleNamespace(identity=identity, sex=sex, descriptor=np.full(128, value))


def test_the_centre_is_the_banks_own_synthetics_of_the_sex(tmp_path: Path) -> None:
    """The cloud's outputs of identities the bank lacks (the patient, leave-one-out) never count."""
    bank = SimpleNamespace(photos=[_photo("a", "F", 1.0), _photo("b", "F", 3.0), _photo("c", "M", 5.0)])
    path = tmp_path / "cloud.npz"
    ids = np.array(["a", "a", "b", "c", "patient"])
    desc = np.stack([np.full(128, v) for v in (10.0, 12.0, 20.0, 30.0, 99.0)])
    np.savez(path, ids=ids, desc=desc)
    assert np.allclose(cloud_centre(bank, "F", path), 14.0)  # type: ignore[arg-type]
    assert np.allclose(cloud_centre(bank, "M", path), 30.0)  # type: ignore[arg-type]
    assert np.allclose(cloud_centre(bank, "", path), 18.0)  # type: ignore[arg-type]
    assert np.allclose(cloud_centre(bank, "F"), 2.0)  # type: ignore[arg-type]  # no cloud: real faces
    np.savez(path, ids=np.array(["patient"]), desc=desc[:1])
    with pytest.raises(ValueError):
        cloud_centre(bank, "F", path)  # type: ignore[arg-type]


def test_the_cloud_file_keeps_forwarded_outputs_named_as_the_bank(tmp_path: Path) -> None:
    """bench/synthetic_cloud.py: one setting's forwarded outputs, ids as the bank names its identities."""
    from bench.synthetic_cloud import cloud

    path = tmp_path / "outputs.npz"
    desc = np.stack([np.full(128, v) for v in (1.0, 2.0, 3.0)])
    np.savez(
        path, nothing_ids=np.array(["001", "001", "002"]), nothing_desc=desc, nothing_ok=np.array([1, 0, 1])
    )
    ids, kept = cloud(path, "nothing")
    assert ids.tolist() == ["london_001", "london_002"] and np.allclose(kept[:, 0], [1.0, 3.0])
