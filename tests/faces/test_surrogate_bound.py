"""The target shape bounded to the bank's faces (issue-11n9, ``shape_bound``): coefficients in the bank's
shape space clipped to ±k sd, the kept nose's landmarks held, then only folded triangles pulled back."""

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
        k = float(np.abs(space.coefficients(shape)).max()) + 0.1
        assert np.array_equal(space.bounded(shape, _nose_fixed(), k), shape)


def test_an_implausible_face_is_pulled_within_k_and_the_nose_stays(bank_path: Path) -> None:
    """A bank face caricatured 4× away from the mean (far past every bank face) comes back within k sd,
    the nose's landmarks exactly where they were, and the change keeps its direction (not undone)."""
    space, shapes = _space(bank_path)
    mean = np.mean(shapes, axis=0)
    wild = (mean + 4.0 * (shapes[0] - mean)).astype(np.float32)
    k = 2.0
    assert np.abs(space.coefficients(wild)).max() > k + 1
    bounded = space.bounded(wild, _nose_fixed(), k)
    assert np.abs(space.coefficients(bounded)).max() <= k + 0.1
    assert np.array_equal(bounded[NOSE], wild[NOSE])
    free = np.setdiff1d(np.arange(68), NOSE)
    towards = ((shapes[0] - mean)[free] * (bounded - mean)[free]).sum()
    assert towards > 0  # still on the caricature's side of the mean


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
    bounded = space.bounded(target, _nose_fixed(), 2.0)
    out = unfold_locally(bounded, reference, reference, tris, size)
    assert not folded(out, reference, tris, size).any()
    assert np.array_equal(out[NOSE], target[NOSE])


@pytest.mark.parametrize(
    ("bound", "calls"), [(0.0, ["_without_folds"]), (3.0, ["bounded", "unfold_locally"])]
)
def test_the_setting_bounds_and_unfolds_locally(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, bound: float, calls: list[str]
) -> None:
    """Off (0): main's whole-target pull-back and no bound; on: the bound, then the local unfolding, on
    every rung (here an overshoot rung, which ``unfold_local`` alone would leave to the old pull-back)."""
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
    engine = SurrogateEngine(SurrogateSettings(shape_bound=bound), load_bank(bank_path))
    with pytest.raises(_Stop):
        _synthesize_until_unfolded(engine, monkeypatch, 1.4)
    assert called == calls
