"""Local unfolding (issue-11n7, ``unfold_local``): a folded warp triangle pulls back only its own landmarks
towards the patient's; the whole-target pull-back (``_without_folds``) took every strong nose-kept rung back
to a fraction of its change for one fold at a mouth corner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import anonymizer.engines.surrogate_synthesis as synthesis
from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_target import _without_folds, folded, unfold_locally
from anonymizer.faces.regions import interocular
from anonymizer.faces.warp import extended, triangulate

BROWS = list(range(17, 27))


def _scene(bank_path: Path) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """The bank's reference shape as the patient, its triangles and crop size, and a target whose brows
    moved up (no fold) and whose left mouth corner crossed the jaw line (a fold)."""
    bank = load_bank(bank_path)
    reference, size = bank.reference.astype(np.float32), bank.crop_size
    iod = interocular(reference)
    target = reference.copy()
    target[BROWS, 1] -= 0.15 * iod  # brows up: folds nothing
    target[48] = reference[4] - np.array([0.1 * iod, 0.0], np.float32)  # the mouth corner past the jaw
    return reference, triangulate(extended(reference, size)), size, target


def test_a_fold_pulls_back_its_own_landmarks_and_leaves_the_brows_moved(bank_path: Path) -> None:
    reference, tris, size, target = _scene(bank_path)
    assert folded(target, reference, tris, size).any()
    local = unfold_locally(target, reference, reference, tris, size)
    assert not folded(local, reference, tris, size).any()
    assert np.array_equal(local[BROWS], target[BROWS])  # far from the fold: the change is kept whole
    assert np.linalg.norm(local[48] - reference[48]) < np.linalg.norm(target[48] - reference[48])
    whole = _without_folds(target, reference, reference, tris, size)
    moved = np.abs(target[BROWS, 1] - reference[BROWS, 1]).mean()
    assert np.abs(whole[BROWS, 1] - reference[BROWS, 1]).mean() < 0.8 * moved  # the old way: brows back too


def test_a_target_without_folds_is_returned_as_it_is(bank_path: Path) -> None:
    reference, tris, size, target = _scene(bank_path)
    target[48] = reference[48]
    assert not folded(target, reference, tris, size).any()
    assert np.array_equal(unfold_locally(target, reference, reference, tris, size), target)


@pytest.mark.parametrize(
    ("setting", "push", "local"),
    [(-1.0, 0.0, False), (0.0, 0.0, True), (0.0, 0.5, False), (1.4, 1.4, True)],
)
def test_the_setting_picks_the_unfolding(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, setting: float, push: float, local: bool
) -> None:
    """``_synthesize`` unfolds with ``unfold_locally`` on a rung whose overshoot is at most the setting;
    off (negative) or on a stronger overshoot rung, main's whole-target pull-back."""
    called: list[str] = []

    def record(name: str):
        original = getattr(synthesis, name)

        def spy(*args, **kwargs):
            called.append(name)
            return original(*args, **kwargs)

        return spy

    monkeypatch.setattr(synthesis, "unfold_locally", record("unfold_locally"))
    monkeypatch.setattr(synthesis, "_without_folds", record("_without_folds"))
    engine = SurrogateEngine(SurrogateSettings(unfold_local=setting), load_bank(bank_path))
    with pytest.raises(_Stop):
        _synthesize_until_unfolded(engine, monkeypatch, push)
    assert called == (["unfold_locally"] if local else ["_without_folds"])


class _Stop(Exception):
    pass


def _synthesize_until_unfolded(engine: SurrogateEngine, monkeypatch: pytest.MonkeyPatch, push: float) -> None:
    """Runs ``_synthesize`` on the bank's own first photo up to the unfolding (the eye opening right after
    it raises ``_Stop``): what comes before needs only the shapes."""
    from anonymizer.engines.base import AlignedFace
    from anonymizer.engines.surrogate_settings import Strength
    from anonymizer.engines.surrogate_synthesis import Ingredients, _PeerBase
    from anonymizer.plans import Region

    bank = engine.bank
    size, reference = bank.crop_size, bank.reference.astype(np.float32)
    image = np.full((size, size, 3), 128, np.uint8)
    plain = np.full((size, size, 3), 128.0, np.float32)
    anti = np.zeros((size, size, 1), np.float32)
    peers = _PeerBase(centre=plain, anti=anti, shape_centre=reference, skin=None)
    ingredients = Ingredients(plain, np.zeros_like(plain), peers, reference, np.zeros_like(plain))
    face = AlignedFace(image=image, landmarks=reference, masks={}, descriptor=None)

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(synthesis, "keep_eye_opening", stop)
    monkeypatch.setattr(synthesis, "piecewise_affine", stop)
    tris = triangulate(extended(reference, size))
    engine._synthesize(face, ingredients, tris, (Region.NOSE,), Strength(1.0, 1.0, 1.0, push))
