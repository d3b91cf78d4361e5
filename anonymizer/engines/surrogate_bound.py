"""The target shape bounded to plausible faces (issue-11n9): a principal-component model of the donor bank's
68-point shapes, Procrustes-aligned to the bank's reference, and the smallest move of a target's free points
that brings each of its coefficients within ``k`` standard deviations of the bank's.

Why: with the nose kept the strong rungs fold warp triangles, and the fold pull-back (``_without_folds``)
took the whole target back towards the patient, so the strongest rungs kept 0.18 of their change (issue-11n7).
Pulling back only the folded triangles' points kept the change but left deformed faces (a doubled cheek line,
twisted eyes). A bound in the bank's shape space keeps the change that real faces show and removes the part
no face in the bank has; the local pull-back then fixes what still folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anonymizer.faces import align


@dataclass(frozen=True)
class ShapeSpace:
    """Principal directions of a donor bank's face shapes, in the frame of its reference shape."""

    reference: np.ndarray  # (68, 2) the bank's reference shape (shapes are similarity-aligned onto it)
    mean: np.ndarray  # (136,) mean aligned shape
    basis: np.ndarray  # (136, m) orthonormal directions, largest variance first
    sd: np.ndarray  # (m,) standard deviation of the bank's shapes along each direction

    @classmethod
    def fit(cls, reference: np.ndarray, shapes: Sequence[np.ndarray], share: float = 0.98) -> ShapeSpace:
        """The directions that hold ``share`` of the bank's shape variance (the rest is landmark noise: a
        bound on it would move every patient's own shape)."""
        ref = np.asarray(reference, np.float64)
        flat = np.stack([_aligned(s, ref) for s in shapes])
        mean = flat.mean(0)
        _, sing, vt = np.linalg.svd(flat - mean, full_matrices=False)
        variance = sing**2 / max(len(flat) - 1, 1)
        kept = int(np.searchsorted(np.cumsum(variance) / max(variance.sum(), 1e-12), share) + 1)
        kept = min(kept, len(variance))
        return cls(ref, mean, vt[:kept].T.copy(), np.sqrt(variance[:kept]))

    def coefficients(self, shape: np.ndarray) -> np.ndarray:
        """(m,) the shape's coordinates in standard deviations of the bank."""
        return self.basis.T @ (_aligned(shape, self.reference) - self.mean) / self.sd

    def bounded(self, target: np.ndarray, fixed: np.ndarray, k: float) -> np.ndarray:
        """``target`` with every coefficient within ±``k`` sd, moving only the points that are not ``fixed``
        ((68,) bool: the kept region's landmarks stay exactly where they are): the least-squares move of the
        free points that takes away each coefficient's excess. A target within the bound is returned as it
        is."""
        target = np.asarray(target, np.float64)
        free = ~np.asarray(fixed, bool)
        if k <= 0 or not free.any():
            return target.astype(np.float32)
        rows = np.repeat(free, 2)
        basis = self.basis[rows]  # (2 × free, m): how the free points move each coefficient
        gram = basis.T @ basis + 1e-6 * np.eye(basis.shape[1])
        moved = target.copy()
        for _ in range(3):  # moving the points moves their best-fitting frame a little: settle it
            scaled = self.coefficients(moved)
            excess = (scaled - np.clip(scaled, -k, k)) * self.sd
            if not np.any(excess):
                break
            to_ref = align.similarity(moved, self.reference)
            move = np.zeros(moved.size)
            move[rows] = basis @ np.linalg.solve(gram, -excess)
            in_ref = align.apply(to_ref, moved).astype(np.float64) + move.reshape(-1, 2)
            moved = align.apply(align.invert(to_ref), in_ref).astype(np.float64)
            moved[fixed] = target[fixed]
        return moved.astype(np.float32)


def _aligned(shape: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(136,) ``shape`` similarity-aligned (Procrustes) onto ``reference``."""
    shape = np.asarray(shape, np.float64)
    return align.apply(align.similarity(shape, reference), shape).astype(np.float64).ravel()
