"""The engine's sex reading: a linear probe on dlib descriptors, fitted on the donor bank's photos alone.

The donors' sex centroids (surrogate_donors.apparent_sex) split descriptor space by the line between two
means; with a texture spread on, two London-set women came out as men by a linear probe while the centroids
still called them women, so the ladder's sex self-check passed them. A ridge probe (the same kind the bench
measures sex with) weighs the descriptor dimensions that separate the sexes, not those that merely differ
between two small groups' means. It is fitted only on the bank's photos and their self-reported sex: never
on the patients it is used on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anonymizer.donors import DonorPhoto

LAMBDA = 30.0  # ridge penalty on standardised descriptor dimensions (a bank holds 20-50 identities)


@dataclass(frozen=True)
class SexProbe:
    """score(desc) > 0: male, < 0: female; |score| ≈ 1 for typical faces of the bank."""

    weights: np.ndarray  # (128,) on raw descriptor dimensions
    bias: float

    @classmethod
    def fit(cls, photos: Sequence[DonorPhoto], lam: float = LAMBDA) -> SexProbe | None:
        """Ridge regression of +1 (M) / -1 (F) on the photos' descriptors, each sex weighted equally (a
        bank with more women than men would otherwise lean female); None without both sexes."""
        known = [p for p in photos if p.sex in ("F", "M")]
        if len({p.sex for p in known}) < 2:
            return None
        x = np.stack([p.descriptor for p in known]).astype(np.float64)
        y = np.array([1.0 if p.sex == "M" else -1.0 for p in known])
        share = {s: float(np.mean(y == s)) for s in (1.0, -1.0)}
        w = np.array([0.5 / share[v] for v in y])  # balanced sample weights
        mu = (w[:, None] * x).sum(0) / w.sum()
        sd = np.sqrt((w[:, None] * (x - mu) ** 2).sum(0) / w.sum()) + 1e-6
        z = (x - mu) / sd
        beta = np.linalg.solve((z * w[:, None]).T @ z + lam * np.eye(z.shape[1]), (z * w[:, None]).T @ y)
        weights = beta / sd
        return cls(weights, float(-(mu @ weights)))

    def score(self, desc: np.ndarray) -> float:
        return float(np.asarray(desc, np.float64) @ self.weights + self.bias)

    def call(self, desc: np.ndarray, margin: float = 0.0) -> str:
        """"M" or "F" ("?" when |score| < ``margin``)."""
        value = self.score(desc)
        if margin > 0 and abs(value) < margin:
            return "?"
        return "M" if value > 0 else "F"

    def direction(self) -> np.ndarray:
        """Unit vector in descriptor space towards male."""
        return self.weights / (np.linalg.norm(self.weights) + 1e-12)

