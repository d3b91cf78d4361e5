"""The strong rungs' anti-face held to a cap (issue-11q10, ``anti_cap``): the anti-face terms together,
× the rung's gain, soft-limited in lightness levels, on a rung whose gain can pass the cap; with
``anti_cap_finish`` only in the finish (the rung the ladder chose, made again)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_settings import Strength
from anonymizer.engines.surrogate_texture import ANTI_CLIP, held
from anonymizer.faces.warp import extended, triangulate
from anonymizer.plans import Region


def test_held_leaves_small_terms_and_limits_large_ones_keeping_their_sign() -> None:
    term = np.array([-200.0, -54.0, -5.0, 0.0, 5.0, 54.0, 200.0], np.float32)
    out = held(term, 27.0)
    assert np.all(np.abs(out) < 27.0)
    assert np.all(np.sign(out) == np.sign(term))
    assert abs(out[4] - 5.0) < 0.2 and abs(out[2] + 5.0) < 0.2  # well below the cap: about itself
    assert out[5] < 0.8 * 54.0 and out[6] > out[5]  # past it: limited, still ordered


class _Stop(Exception):
    pass


def _texture_change(
    engine: SurrogateEngine, monkeypatch: pytest.MonkeyPatch, anti: float, finish: bool
) -> float:
    """The largest lightness change the anti-face terms make to a plain texture on a rung of gain ``anti``
    (read where ``_synthesize`` hands the texture on, with a patient's anti-face of ANTI_CLIP levels)."""
    from anonymizer.engines.base import AlignedFace
    from anonymizer.engines.surrogate_synthesis import Ingredients, _PeerBase

    bank = engine.bank
    size, reference = bank.crop_size, bank.reference.astype(np.float32)
    plain = np.full((size, size, 3), 128.0, np.float32)
    patient_anti = np.full((size, size, 1), -ANTI_CLIP, np.float32)  # a dark ring flipped at full strength
    peers = _PeerBase(centre=plain, anti=patient_anti, shape_centre=reference, skin=None)
    ingredients = Ingredients(plain, np.zeros_like(plain), peers, reference, np.zeros_like(plain))
    face = AlignedFace(image=plain.astype(np.uint8), landmarks=reference, masks={}, descriptor=None)
    seen: list[float] = []

    def stop(texture, *args, **kwargs):
        seen.append(float(np.abs(texture - 128.0).max()))
        raise _Stop

    monkeypatch.setattr(engine, "_beardless", stop)
    tris = triangulate(extended(reference, size))
    with pytest.raises(_Stop):
        engine._synthesize(
            face, ingredients, tris, (Region.NOSE,), Strength(1.0, 1.0, 1.0, 0.0, anti), finish=finish
        )
    return seen[0]


@pytest.mark.parametrize(
    ("cap", "at_finish", "anti", "finish", "expected"),
    [
        (0.0, False, 3.0, False, 3.0 * ANTI_CLIP),  # off: main's term
        (27.0, False, 3.0, False, 27.0 * np.tanh(2.0)),  # a strong rung: held under the cap
        (27.0, False, 1.4, False, 1.4 * ANTI_CLIP),  # a weak rung (1.4 × 18 < 27): main's
        (27.0, True, 3.0, False, 3.0 * ANTI_CLIP),  # finish only: the ladder's rungs are main's
        (27.0, True, 3.0, True, 27.0 * np.tanh(2.0)),  # and the finish holds it
    ],
)
def test_the_cap_holds_only_strong_rungs_and_with_finish_only_the_finish(
    bank_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cap: float,
    at_finish: bool,
    anti: float,
    finish: bool,
    expected: float,
) -> None:
    settings = SurrogateSettings(anti_cap=cap, anti_cap_finish=at_finish, anti_sex_guard=False)
    engine = SurrogateEngine(settings, load_bank(bank_path))
    assert abs(_texture_change(engine, monkeypatch, anti, finish) - expected) < 0.05
