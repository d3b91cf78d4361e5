"""Expression and face frame for the surrogate's target shape.

The donors give the synthetic face its shape, but two things about that shape belong to the photo, not to the
patient's identity, and must follow the patient:

- **Expression.** A linear expression model is learnt from the donor bank itself: the main directions in
  which one donor's landmarks move between their own photos (for the London Set, neutral → smiling: the mouth
  corners widen and rise, the cheeks and brows lift, the eyes narrow). The target's coordinates along those
  directions are set to the patient's, over the points that are free to move, so a smile, an open mouth or
  narrowed eyes survive even when the donors' mouths and eyes are used.
- **Frame.** dlib's HOG box (and a reader's sense of where the face sits on the head) follows the face's
  overall position and size. The shape caricature changes proportions; a final similarity (uniform scale and
  shift, no rotation) brings the free points' centroid and spread back onto the patient's, so the face keeps
  its place and size on the head while its proportions stay the donors'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anonymizer.channels import per_channel
from anonymizer.faces import align
from anonymizer.faces.regions import interocular


@dataclass(frozen=True)
class ExpressionModel:
    """Within-identity landmark directions of a donor bank, in its reference frame."""

    reference: np.ndarray  # (68, 2) the bank's reference shape (the frame shapes are compared in)
    mean: np.ndarray  # (136,) mean normalised shape
    basis: np.ndarray  # (136, k) orthonormal directions of expression

    @classmethod
    def fit(
        cls, reference: np.ndarray, shapes_by_identity: Sequence[Sequence[np.ndarray]], k: int = 2
    ) -> ExpressionModel:
        """Principal directions of how each identity's shape varies between its own photos (identities
        with one photo only add to the mean). ``k`` = 0 or too few photos: an empty basis (no transfer)."""
        ref = np.asarray(reference, np.float64)
        normalised = [[_normalise(s, ref) for s in shapes] for shapes in shapes_by_identity]
        flat = [s for shapes in normalised for s in shapes]
        mean = np.mean(flat, axis=0) if flat else ref.ravel()
        within = [s - np.mean(shapes, axis=0) for shapes in normalised if len(shapes) > 1 for s in shapes]
        if len(within) < 2 or k <= 0:
            return cls(ref, mean, np.zeros((ref.size, 0)))
        _, _, vt = np.linalg.svd(np.asarray(within), full_matrices=False)
        return cls(ref, mean, vt[: min(k, len(vt))].T.copy())

    def coefficients(self, shape: np.ndarray) -> np.ndarray:
        return self.basis.T @ (_normalise(shape, self.reference) - self.mean)

    def transfer(self, target: np.ndarray, patient: np.ndarray, free: np.ndarray) -> np.ndarray:
        """``target`` with its expression coefficients moved to the patient's, changing only the ``free``
        points ((68,) bool): the least-squares (smallest) move over them."""
        if self.basis.shape[1] == 0 or not free.any():
            return np.asarray(target, np.float32)
        rows = np.repeat(free, 2)
        basis = self.basis[rows]  # (2 × free, k): the coefficients the free points can move
        gram = basis.T @ basis + 1e-6 * np.eye(basis.shape[1])
        wanted = self.coefficients(patient)
        moved = np.asarray(target, np.float64)
        for _ in range(3):  # moving the points moves their best-fitting frame a little: settle it
            to_ref = align.similarity(moved, self.reference)
            move = np.zeros(moved.size)
            move[rows] = basis @ np.linalg.solve(gram, wanted - self.coefficients(moved))
            moved_ref = align.apply(to_ref, moved).astype(np.float64) + move.reshape(-1, 2)
            moved = align.apply(align.invert(to_ref), moved_ref).astype(np.float64)
            moved[~free] = np.asarray(target, np.float64)[~free]  # exactly where they were
        return moved.astype(np.float32)


def keep_frame(target: np.ndarray, patient: np.ndarray, free: np.ndarray) -> np.ndarray:
    """Uniform scale and shift of the ``free`` points ((68,) bool) so that their centroid and RMS spread equal
    the patient's same points; fixed points stay where they are."""
    target = np.asarray(target, np.float64)
    if free.sum() < 3:
        return target.astype(np.float32)
    patient = np.asarray(patient, np.float64)
    t, p = target[free], patient[free]
    tc, pc = t.mean(0), p.mean(0)
    scale = np.sqrt(((p - pc) ** 2).sum(1).mean() / max(((t - tc) ** 2).sum(1).mean(), 1e-9))
    out = target.copy()
    out[free] = pc + scale * (t - tc)
    return out.astype(np.float32)


OUTLINE_POINTS = tuple(range(27))  # jaw 0-16 and brows 17-26: the face's sides, chin and top edge


def keep_outline_frame(target: np.ndarray, patient: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``target`` with its free outline points (jaw and brows, OUTLINE_POINTS) given the patient's outline
    centroid and RMS spread by one uniform scale and shift of those points alone: the outline keeps the
    donors' shape, the inner face stays where it is. ``keep_frame`` matches all free points at once, so a
    donor outline wider than the patient's leaves the face's extent off (settings.outline_frame)."""
    outline = np.zeros(68, bool)
    outline[list(OUTLINE_POINTS)] = True
    return keep_frame(target, patient, np.asarray(free, bool) & outline)


def inset_domain(mask: np.ndarray, landmarks: np.ndarray, inset: float, jaw_inset: float) -> np.ndarray:
    """The blend domain ``mask`` (uint8 0/255) pulled in from its outline by ``inset`` × inter-ocular distance
    above the nose bridge (hair and forehead, whose values would smear into the face) and by ``jaw_inset``
    below it. A wide ring of the patient's own cheek and jaw left around the synthetic face reads as a
    smaller face inside the head (dlib's detector then boxes the inner face: one pyramid level smaller)."""
    iod = interocular(landmarks)
    wide, narrow = max(1, int(inset * iod)), max(1, int(jaw_inset * iod))
    dist = _inside_distance((mask > 0).astype(np.uint8))
    split = int(np.clip(np.asarray(landmarks)[29, 1], 0, mask.shape[0]))  # nose bridge, lower half
    keep = np.zeros(mask.shape, bool)
    keep[:split] = dist[:split] > wide + 0.5
    keep[split:] = dist[split:] > narrow + 0.5
    return keep.astype(np.uint8) * 255


def _inside_distance(inside: np.ndarray) -> np.ndarray:
    """``cv2.distanceTransform(inside, DIST_L2, DIST_MASK_PRECISE)`` (float32, 0 outside), computed on the
    set pixels' bounding box grown by one pixel: every pixel beyond it is 0, and for a pixel inside the
    nearest 0 beyond the box is never nearer than the box's own zero rim (or the image's edge, where the box
    meets it), so the distances are the whole mask's (the window ``regions._reach`` uses; issue-11t9: the
    domain's box is about half the crop, once per rung). OpenCV's float32 solve rounds by the window's
    extent, ~1e-5 at 90 px; a distance between pixel centres (the root of an integer) never comes within
    1/(8k) of the k + 0.5 that ``inset_domain`` compares it with (k ~14 on a 512 crop: 0.009), so its mask
    is the whole image's exactly."""
    x, y, w, h = cv2.boundingRect(inside)
    rows, cols = slice(max(0, y - 1), y + h + 1), slice(max(0, x - 1), x + w + 1)
    dist = np.zeros(inside.shape, np.float32)
    dist[rows, cols] = cv2.distanceTransform(inside[rows, cols], cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist


def broad_shading(synth: np.ndarray, patient: np.ndarray, domain: np.ndarray, sigma: float) -> np.ndarray:
    """``synth`` (uint8 crop) with its broadest band (Gaussian ``sigma`` pixels, over ``domain``) replaced by
    the patient's: the beard shadow of the lower face and the light's fall-off. Without it the Poisson blend
    meets a stubbled or shaded jaw with the donors' clean, brighter skin and draws a new chin line inside the
    face, which reads as a smaller face. Finer bands (features, skin detail) stay the synthetic face's."""
    if sigma <= 0 or not domain.any():
        return synth
    weight = _wide_blur(domain.astype(np.float32), sigma)
    inside = per_channel(domain)  # the same values as domain[..., None], in long loops
    diff = (patient.astype(np.float32) - synth.astype(np.float32)) * inside
    low = _wide_blur(diff, sigma) / per_channel(np.maximum(weight, 1e-3))
    out = synth.astype(np.float32) + low * inside
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a wide ``sigma``, computed at a quarter of ``sigma`` pixels per sample (the band it
    keeps is far coarser than that; a full-size kernel of ~6 sigma costs ~50x more)."""
    factor = max(1.0, sigma / 4.0)
    h, w = image.shape[:2]
    small = cv2.resize(
        image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
    )
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _normalise(shape: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``shape`` similarity-aligned onto ``reference`` (pose and size removed), flattened: (136,)."""
    shape = np.asarray(shape, np.float64)
    return align.apply(align.similarity(shape, reference), shape).astype(np.float64).ravel()
