"""The target shape bounded to the bank's faces (issue-11n9, ``shape_bound``): coefficients in the bank's
shape space (Mahalanobis norm and residual) within the bank's farthest face, the kept nose's landmarks held,
then only folded triangles pulled back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import anonymizer.engines.surrogate_synthesis as synthesis
from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_bound import ShapeSpace
from anonymizer.engines.surrogate_target import REGION_POINTS, folded, unfold_locally
from anonymizer.faces.regions import interocular
from anonymizer.faces.warp import extended, triangulate
from anonymizer.plans import Region
from tests.faces.test_surrogate_unfold import _Stop, _synthesize_until_unfolded

NOSE = list(REGION_POINTS[Region.NOSE])


def _space(bank_path: Path) -> tuple[ShapeSpace, list[np.ndarray]]:
    bank = load_bank(bank_path)
    shapes = [p.landmarks.astype(np.float32) for p in bank.photos]
    return ShapeSpace.fit(bank.reference, shapes), shapes


def _nose_fixed() -> np.ndarray:
    fixed = np.zeros(68, bool)
    fixed[NOSE] = True
    return fixed


def test_a_bank_face_is_left_as_it_is(bank_path: Path) -> None:
    space, shapes = _space(bank_path)
    for shape in shapes:
        assert np.array_equal(space.bounded(shape, _nose_fixed(), 1.0), shape)


def test_an_implausible_face_is_pulled_within_the_bound_and_the_nose_stays(bank_path: Path) -> None:
    """A bank face caricatured 4× away from the mean, with a jagged jaw line (off the bank's directions),
    comes back within the bank's farthest face in both norms; with the nose held, the nose's landmarks stay
    exactly where they were (so what the nose alone carries may stay beyond the bound: here a 4× nose) and
    the rest comes back most of the way; the change keeps its direction (not undone)."""
    space, shapes = _space(bank_path)
    mean = np.mean(shapes, axis=0)
    wild = (mean + 4.0 * (shapes[0] - mean)).astype(np.float32)
    wild[0:17:2, 0] += 0.1 * interocular(mean)  # every other jaw point out: a zigzag outline
    most, before = space.farthest, space.norms(wild)
    assert before[0] > 2 * most[0] and before[1] > 2 * most[1]
    free = space.bounded(wild, np.zeros(68, bool), 1.0)
    assert space.norms(free)[0] <= 1.05 * most[0] and space.norms(free)[1] <= 1.05 * most[1]
    bounded = space.bounded(wild, _nose_fixed(), 1.0)
    after = space.norms(bounded)
    assert after[0] <= 0.5 * before[0] and after[1] <= 0.5 * before[1]
    assert np.array_equal(bounded[NOSE], wild[NOSE])
    others = np.setdiff1d(np.arange(68), NOSE)
    assert ((shapes[0] - mean)[others] * (bounded - mean)[others]).sum() > 0  # on the caricature's side


def test_bound_then_local_unfolding_leaves_no_fold_and_the_nose_kept(bank_path: Path) -> None:
    """11n7's scene: a mouth corner pushed past the jaw line folds a triangle; after the bound and the
    local pull-back nothing folds and the nose has not moved."""
    bank = load_bank(bank_path)
    space, _ = _space(bank_path)
    reference, size = bank.reference.astype(np.float32), bank.crop_size
    tris = triangulate(extended(reference, size))
    target = reference.copy()
    target[48] = reference[4] - np.array([0.1 * interocular(reference), 0.0], np.float32)
    assert folded(target, reference, tris, size).any()
    bounded = space.bounded(target, _nose_fixed(), 1.0)
    out = unfold_locally(bounded, reference, reference, tris, size)
    assert not folded(out, reference, tris, size).any()
    assert np.array_equal(out[NOSE], target[NOSE])


@pytest.mark.parametrize(
    ("bound", "fold", "calls"),
    [
        (0.0, True, ["_without_folds"]),
        (1.0, False, ["_without_folds"]),
        (1.0, True, ["bounded", "_without_folds"]),
    ],
)
def test_the_setting_bounds_a_rung_that_folds(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, bound: float, fold: bool, calls: list[str]
) -> None:
    """Off (0): no bound. In the second pass: a rung whose target folds is made again bounded to the bank's
    faces (here an overshoot rung), then main's pull-back for what still folds; a rung that folds nothing is
    main's."""
    called: list[str] = []

    def record(owner: object, name: str) -> None:
        original = getattr(owner, name)

        def spy(*args, **kwargs):
            called.append(name)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)

    record(synthesis, "unfold_locally")
    record(synthesis, "_without_folds")
    record(ShapeSpace, "bounded")
    if fold:  # the donor shape with a mouth corner past the jaw line
        shaped = synthesis._target_shape

        def folding(patient, *args, **kwargs):
            target = shaped(patient, *args, **kwargs).copy()
            target[48] = patient[4] - np.array([0.1 * interocular(patient), 0.0], np.float32)
            return target

        monkeypatch.setattr(synthesis, "_target_shape", folding)
    engine = SurrogateEngine(SurrogateSettings(shape_bound=bound), load_bank(bank_path))
    engine._bounding = bound > 0  # the second pass (anonymize: only after every set of main's failed)
    with pytest.raises(_Stop):
        _synthesize_until_unfolded(engine, monkeypatch, 1.4)
    assert called == calls
