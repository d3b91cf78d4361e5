"""Fakes for the ladder's unit tests (issued identities, spread_pick): a two-donor bank, a patient far from
every output, and orthogonal output descriptors."""

from __future__ import annotations

import numpy as np


def unit(n: int) -> np.ndarray:
    """Output ``n``'s descriptor: orthogonal unit vectors × 0.5, so any two lie 0.71 apart."""
    out = np.zeros(128)
    out[n] = 0.5
    return out


class TwoDonorBank:
    """A bank of two donor identities, d1 and d2, with no photos (the fake synthesis reads none)."""

    def by_identity(self) -> dict[str, list]:
        return {"d1": [], "d2": []}


class FarPatient:
    """A patient face whose descriptor lies far from every output."""

    descriptor = np.ones(128)


def plain_engine(monkeypatch, rungs: int, ingredients: object = None, **settings: object):  # type: ignore[no-untyped-def]
    """A surrogate engine on ``TwoDonorBank`` with ``rungs`` plain rungs (texture n on rung n) and every
    test but the ones a caller fakes off: no typicality, pair distance or sex check, no detail donor, and
    ``ingredients`` for every donor set. Callers patch ``_synthesize`` and ``_distinct``."""
    from anonymizer.engines import surrogate_ladder
    from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
    from anonymizer.engines.surrogate_settings import Strength

    plain = SurrogateSettings(
        ladder=tuple(Strength(float(n), 1.0, 0.0) for n in range(rungs)),
        typicality=0.0,
        shape_typicality=0.0,
        self_check_pair_distance=0.0,
        self_check_sex=False,
        **settings,  # type: ignore[arg-type]
    )
    engine = SurrogateEngine(plain, TwoDonorBank())  # type: ignore[arg-type]
    monkeypatch.setattr(surrogate_ladder, "detail_donor", lambda *a: None)
    monkeypatch.setattr(engine, "_ingredients", lambda *a, **k: ingredients)
    return engine
