"""The target shape bounded to plausible faces (issue-11n9): a principal-component model of the donor bank's
68-point shapes, Procrustes-aligned to the bank's reference, and a move of a target's free points that brings
it within ``scale`` × the bank's farthest face, both in the model's directions (Mahalanobis norm) and off them
(the residual the directions do not explain).

Why: with the nose kept the strong rungs fold warp triangles, and the fold pull-back (``_without_folds``)
took the whole target back towards the patient, so the strongest rungs kept 0.18 of their change (issue-11n7).
Pulling back only the folded triangles' points kept the change but left deformed faces (a doubled cheek line,
twisted eyes). Measured on 001's rungs (bank of 38 identities, 98 % of the variance in 17 directions): real
faces unseen by the model lie within a Mahalanobis norm of 7.7 and a residual of 22 px (the bank's own
faces: 6.2 and 14 px), the ladder's targets at 7-47 and 36-420 px. A per-direction clip (±3 sd) left the
residual and a norm up to 12, and 001's outputs were twisted faces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from anonymizer.faces import align


@dataclass(frozen=True)
class ShapeSpace:
    """Principal directions of a donor bank's face shapes, in the frame of its reference shape."""

    reference: np.ndarray  # (68, 2) the bank's reference shape (shapes are similarity-aligned onto it)
    mean: np.ndarray  # (136,) mean aligned shape
    basis: np.ndarray  # (136, m) orthonormal directions, largest variance first
    sd: np.ndarray  # (m,) standard deviation of the bank's shapes along each direction
    farthest: tuple[float, float]  # the bank's largest Mahalanobis norm and residual (px)

    @classmethod
    def fit(cls, reference: np.ndarray, shapes: Sequence[np.ndarray], share: float = 0.98) -> ShapeSpace:
        """The directions that hold ``share`` of the bank's shape variance; the rest is the residual."""
        ref = np.asarray(reference, np.float64)
        flat = np.stack([_aligned(s, ref) for s in shapes])
        mean = flat.mean(0)
        _, sing, vt = np.linalg.svd(flat - mean, full_matrices=False)
        variance = sing**2 / max(len(flat) - 1, 1)
        kept = int(np.searchsorted(np.cumsum(variance) / max(variance.sum(), 1e-12), share) + 1)
        kept = min(kept, len(variance))
        space = cls(ref, mean, vt[:kept].T.copy(), np.sqrt(np.maximum(variance[:kept], 1e-12)), (0.0, 0.0))
        norms = np.array([space.norms(s) for s in shapes])
        return replace(space, farthest=(float(norms[:, 0].max()), float(norms[:, 1].max())))

    def norms(self, shape: np.ndarray) -> tuple[float, float]:
        """The shape's Mahalanobis norm in the model's directions and its residual off them (px)."""
        coeffs, residual = self._split(_aligned(shape, self.reference) - self.mean)
        return float(np.linalg.norm(coeffs / self.sd)), float(np.linalg.norm(residual))

    def bounded(self, target: np.ndarray, fixed: np.ndarray, scale: float) -> np.ndarray:
        """``target`` with its Mahalanobis norm and residual each at most ``scale`` × the bank's farthest
        face's, moving only the points that are not ``fixed`` ((68,) bool: the kept region's landmarks stay
        exactly where they are). The part beyond the bound is scaled down towards the bank's mean (the
        direction of the change is kept); a target within the bound is returned as it is."""
        target = np.asarray(target, np.float64)
        fixed = np.asarray(fixed, bool)
        if scale <= 0 or fixed.all():
            return target.astype(np.float32)
        most_norm, most_residual = scale * self.farthest[0], scale * self.farthest[1]
        moved = target.copy()
        for _ in range(30):  # holding the fixed points back moves the rest's frame a little: settle it
            to_ref = align.similarity(moved, self.reference)
            coeffs, residual = self._split(align.apply(to_ref, moved).astype(np.float64).ravel() - self.mean)
            norm, off = float(np.linalg.norm(coeffs / self.sd)), float(np.linalg.norm(residual))
            if norm <= most_norm * 1.01 and off <= most_residual * 1.01:
                break
            shrunk = self.basis @ (coeffs * min(1.0, most_norm / norm)) + residual * min(
                1.0, most_residual / off
            )
            back = align.apply(align.invert(to_ref), (self.mean + shrunk).reshape(-1, 2)).astype(np.float64)
            moved[~fixed] = back[~fixed]
        return moved.astype(np.float32)

    def _split(self, centred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coeffs = self.basis.T @ centred
        return coeffs, centred - self.basis @ coeffs


def _aligned(shape: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(136,) ``shape`` similarity-aligned (Procrustes) onto ``reference``."""
    shape = np.asarray(shape, np.float64)
    return align.apply(align.similarity(shape, reference), shape).astype(np.float64).ravel()
