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
