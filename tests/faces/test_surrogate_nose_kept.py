"""The kept nose, issue-11nk: the self-check's linkage test among strangers (bank identities that are not
the donor set's), and the nose-kept overrides that leave every other setting's values alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.base import AlignedFace
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_donors import DonorChoice
from anonymizer.engines.surrogate_ladder import _Common
from anonymizer.plans import Region

PASSED = (1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 0.72)  # a rung's score that passed _judge (3 real faces nearer)


def _unit(n: int) -> np.ndarray:
    v = np.zeros(128)
    v[n] = 1.0
    return v


def _scene(bank_path: Path, aim: int, strangers_near: int) -> tuple:
    """An output 0.7 from its patient; the donor set's identities lie 0.3 from it, and ``strangers_near``
    of the other bank identities 0.5 from it (the rest 1.0)."""
    engine = SurrogateEngine(SurrogateSettings(population_strangers=aim), load_bank(bank_path))
    ids = sorted(engine.bank.by_identity())
    donors = tuple(ids[:3])
    out, patient = np.zeros(128), 0.7 * _unit(0)
    reference, near = [], 0
    for n, identity in enumerate(ids):
        if identity in donors:
            reference.append((0.3 * _unit(n + 1))[None])
        elif near < strangers_near:
            reference.append((0.5 * _unit(n + 1))[None])
            near += 1
        else:
            reference.append((1.0 * _unit(n + 1))[None])
    common = _Common(np.zeros((0, 3), int), np.zeros((0, 128)), reference, [])
    face = AlignedFace(np.zeros((4, 4, 3), np.uint8), np.zeros((68, 2), np.float32), descriptor=patient)
    check = _Check(0.7, None, len(donors) + strangers_near, len(ids), out, "F")
    return engine, [check], [face], DonorChoice(donors, 0), common


def test_a_rung_whose_nearer_real_faces_are_its_donors_fails_among_strangers(bank_path: Path) -> None:
    engine, checks, faces, choice, common = _scene(bank_path, aim=2, strangers_near=1)
    passed, score, far_all = engine._among_strangers(PASSED, checks, faces, choice, common)
    assert not passed and not far_all
    # kept as the fallback: ranked above every failing rung, below a pass; its count is the strangers'
    assert score[0] == 0.5 and score[-2] == 1.0 and score[-1] == PASSED[-1]
    engine, checks, faces, choice, common = _scene(bank_path, aim=2, strangers_near=2)
    assert engine._among_strangers(PASSED, checks, faces, choice, common) == (True, PASSED, True)


def test_off_the_strangers_test_leaves_a_passing_rung_as_it_is(bank_path: Path) -> None:
    engine, checks, faces, choice, common = _scene(bank_path, aim=0, strangers_near=0)
    assert engine._among_strangers(PASSED, checks, faces, choice, common) == (True, PASSED, True)


def test_the_nose_kept_overrides_apply_with_the_nose_kept_only() -> None:
    settings = SurrogateSettings()
    engine = SurrogateEngine(settings)
    nose = dict(engine._region_overrides((Region.NOSE,)))
    for name, value in settings.nose_kept:
        assert nose[name] == value
    own = {  # each other setting's own tables (sex_estimate is also in eyes_kept: that one is the eyes')
        (): settings.nothing_kept,
        (Region.MOUTH,): settings.mouth_kept,
        (Region.EYES,): settings.region_kept + settings.eyes_kept,
    }
    for other, tables in own.items():
        overrides = dict(engine._region_overrides(other))
        for name, _ in settings.nose_kept:
            assert overrides.get(name) == dict(tables).get(name)


def test_anti_eyes_lets_the_anti_face_reach_the_eyes(bank_path: Path) -> None:
    """At 0 (main's value) the anti-face leaves the eyes out; at 1 it covers them as it covers the
    cheeks next to them."""
    bank = load_bank(bank_path)
    centres = [
        np.round(bank.reference[points].mean(0)).astype(int) for points in (slice(36, 42), slice(42, 48))
    ]
    weights = {}
    for share in (0.0, 1.0):
        weight = SurrogateEngine(SurrogateSettings(anti_eyes=share), bank)._anti_weight()[..., 0]
        weights[share] = [float(weight[y, x]) for x, y in centres]
    assert max(weights[0.0]) < 0.5  # 0.38: only the blur of the cheeks' weight reaches the eyes' centre
    assert min(weights[1.0]) > 0.95


def test_the_bench_takes_nose_kept_values_each_typed_like_its_setting() -> None:
    from bench.eval_pixels import engine_overrides

    value = "anti_eyes:1,population_strangers:3,anti_sex_guard:yes,sex_reader:probe"
    pairs = engine_overrides([f"nose_kept={value}"])
    assert pairs == {
        "nose_kept": (
            ("anti_eyes", 1.0),
            ("population_strangers", 3),
            ("anti_sex_guard", True),
            ("sex_reader", "probe"),
        )
    }
    assert engine_overrides(["region_kept="]) == {"region_kept": ()}  # every setting as with nothing kept
