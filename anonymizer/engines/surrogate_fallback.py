"""A keyed choice of the rung handed to verification when no rung of any donor set passes the self-check
(settings.fallback_keyed).

Such a group's fallback is the rung most likely to verify: the farthest from the patient among those with the
most real faces nearer. Two patients of one demographic share most of their donors (a fold of the London set
holds a handful of young white women), so their farthest rungs land in the same place: draw A's 001 and 013,
outputs 0.43-0.45 apart, both 0.65-0.69 from the same bank face. The engine cannot see other patients'
outputs, but each patient can choose among their equally safe rungs by a direction of the descriptor space
keyed to their identity seed: different patients look in different directions, and one patient's photos, now
or later, get the same choice (the seed and the rungs are deterministic).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, TypeVar

import numpy as np


class _Candidate(Protocol):
    score: tuple[float, ...]
    outs: np.ndarray | None


def fallback_direction(identity_seed: int, dims: int = 128) -> np.ndarray:
    """(dims,) unit direction of the descriptor space keyed to the patient's identity seed alone."""
    digest = hashlib.sha256(f"surrogate-fallback|{identity_seed}".encode()).digest()
    direction = np.random.default_rng(int.from_bytes(digest[:8], "big")).standard_normal(dims)
    return direction / np.linalg.norm(direction)


C = TypeVar("C", bound=_Candidate)


def keyed_fallback(best: C, candidates: Sequence[C], identity_seed: int, slack: float) -> C:
    """Among ``candidates`` (failing rungs, each with its outputs' descriptors) that score as ``best`` on
    everything but the distance to the patient (likely to verify, sex kept, donor free, real faces nearer;
    ``_Attempt.score``) and lie at most ``slack`` nearer to the patient than ``best``, the one farthest
    along the patient's keyed direction; ``best`` when there is none or ``slack`` <= 0."""
    if slack <= 0:
        return best
    tied = [
        c
        for c in candidates
        if c.outs is not None and c.score[:-1] == best.score[:-1] and c.score[-1] >= best.score[-1] - slack
    ]
    if not tied:
        return best
    direction = fallback_direction(identity_seed)
    return max(tied, key=lambda c: float(direction @ np.asarray(c.outs).mean(axis=0)))
