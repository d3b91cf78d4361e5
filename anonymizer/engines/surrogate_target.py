"""The surrogate's target shape: the donors' face shape (caricatured away from the peers' mean) in the
patient's pose, preserved-region landmarks kept, the free mouth and eyes following the patient's expression,
and no warp triangle folded (pure functions on landmarks)."""

from __future__ import annotations

import numpy as np

from anonymizer.engines.surrogate_settings import Strength
from anonymizer.faces import align
from anonymizer.faces.warp import extended
from anonymizer.plans import Region

# landmark indices that stay at the patient's position when their region is preserved
REGION_POINTS: dict[Region, tuple[int, ...]] = {
    Region.MOUTH: tuple(range(48, 68)),
    Region.NOSE: tuple(range(27, 36)),
    Region.EYES: tuple(range(36, 48)),
    Region.BROWS: tuple(range(17, 27)),
    Region.FACE: tuple(range(68)),
}
# landmarks an overshoot rung pushes past the donor shape: outline, brows, eyes (face width, brow height, eye
# spacing). Nose and mouth are left at the donor shape: overshooting them turns expressions into grimaces.
PUSH_POINTS = (*range(0, 27), *range(36, 48))
# The landmarks the donor shape is fitted on. FIT_ALL: a caricatured donor outline wider than the patient's
# (in inter-ocular units) shrank the fitted inner face, and with the eyes kept at the patient's size the brows
# came down onto them and the nose shortened (eval_pixels --subset 4, eyes kept: brows up to 0.09 × inter-
# ocular lower on 12 of 16 outputs, the nose up to 0.13 shorter on 11), which dlib's HOG box reads as a
# smaller face. FIT_INNER scales the donor shape by its features, so the inner face keeps the patient's size
# and the donors' proportions.
FIT_ALL, FIT_INNER = tuple(range(68)), tuple(range(17, 68))
MOUTH_POINTS, EYE_R_POINTS, EYE_L_POINTS = list(range(48, 68)), list(range(36, 42)), list(range(42, 48))


def _caricature(average: np.ndarray, population: np.ndarray, gain: float) -> np.ndarray:
    """Move ``average`` away from the population mean by ``gain`` (1 = unchanged)."""
    return (population + gain * (np.asarray(average, np.float32) - population)).astype(np.float32)



def _target_shape(
    patient: np.ndarray,
    donor_mean: np.ndarray,
    preserve: tuple[Region, ...],
    inner: float,
    strength: Strength,
    expression_follow: float = 0.0,
    fit: tuple[int, ...] = FIT_ALL,
) -> np.ndarray:
    """Patient pose/expression, donors' face shape. Preserved-region landmarks keep the patient's position;
    the free mouth and eyes take ``expression_follow`` of the patient's shape about their own centres.
    ``fit``: the landmarks the donor shape is similarity-fitted on (FIT_INNER: brows, eyes, nose, mouth)."""
    patient = np.asarray(patient, np.float64)
    points = list(fit)
    donor = align.apply(align.similarity(donor_mean[points], patient[points]), donor_mean).astype(np.float64)
    weight = np.full(68, inner)
    weight[:17] = strength.jaw
    weight[list(PUSH_POINTS)] *= 1.0 + strength.push
    for region in preserve:
        weight[list(REGION_POINTS.get(region, ()))] = 0.0
    target = patient + weight[:, None] * (donor - patient)
    for points, follow in (
        (MOUTH_POINTS, _follow_weight(preserve, Region.MOUTH, expression_follow)),
        (EYE_R_POINTS, _follow_weight(preserve, Region.EYES, expression_follow)),
        (EYE_L_POINTS, _follow_weight(preserve, Region.EYES, expression_follow)),
    ):
        if follow > 0:
            target[points] = _follow_expression(target[points], patient[points], follow)
    return target.astype(np.float32)


def _without_folds(
    target: np.ndarray,
    patient: np.ndarray,
    reference: np.ndarray,
    tris: np.ndarray,
    size: int,
    steps: int = 6,
) -> np.ndarray:
    """Pull the target back towards the patient's landmarks until no warp triangle folds over or collapses
    relative to the bank's reference shape, whose texture it receives (a fold smears the texture into a
    streak down the cheek: seen with a kept nose and the strongest rungs)."""
    patient = np.asarray(patient, np.float32)
    reference = _signed_areas(extended(reference, size), tris)
    for _ in range(steps):
        areas = _signed_areas(extended(target, size), tris)
        if np.all(areas * np.sign(reference) > 0.15 * np.abs(reference)):
            break
        target = patient + 0.75 * (target - patient)
    return target.astype(np.float32)


# extended()'s forehead point 68 + i lies above brow point 17 + i (faces.regions.forehead_points)
FOREHEAD_OF, FOREHEADS = 17, 10


def unfold_locally(
    target: np.ndarray,
    patient: np.ndarray,
    reference: np.ndarray,
    tris: np.ndarray,
    size: int,
    steps: int = 12,
) -> np.ndarray:
    """``_without_folds`` that pulls back only the landmarks of the folded triangles (a forehead point
    stands for its brow point), a step at a time, and the whole target (``_without_folds``) only for what
    is still folded after ``steps``. With the nose kept the global pull-back took every strong rung to
    0.18-0.42 of its change (4-6 steps of 0.75 on 083's rungs 1-9, folds at the mouth corners against
    the outline and at the brow ends): the whole face went back to the patient for a fold in one corner."""
    patient = np.asarray(patient, np.float32)
    target = np.asarray(target, np.float32).copy()
    for _ in range(steps):
        bad = folded(target, reference, tris, size)
        if not bad.any():
            return target
        corners = np.unique(tris[bad])
        corners = corners[corners < 68 + FOREHEADS]  # the crop's border points never move
        points = np.unique(np.where(corners >= 68, corners - 68 + FOREHEAD_OF, corners))
        if points.size == 0:
            break
        target[points] = patient[points] + 0.75 * (target[points] - patient[points])
    return _without_folds(target, patient, reference, tris, size)


def folded(target: np.ndarray, reference: np.ndarray, tris: np.ndarray, size: int) -> np.ndarray:
    """(T,) bool: the warp triangles that fold over or collapse (``_without_folds``' test) on ``target``."""
    reference = _signed_areas(extended(reference, size), tris)
    areas = _signed_areas(extended(target, size), tris)
    return ~(areas * np.sign(reference) > 0.15 * np.abs(reference))


def _signed_areas(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _follow_weight(preserve: tuple[Region, ...], region: Region, follow: float) -> float:
    return 0.0 if region in preserve else follow


def _follow_expression(synthetic: np.ndarray, patient: np.ndarray, follow: float) -> np.ndarray:
    """Blend a feature's shape about its own centre towards the patient's (a smile, an open mouth, how
    open the eyes are) while it stays where the synthetic face put it (mouth position and eye spacing are
    identity, their shape at the moment is expression)."""
    centre = synthetic.mean(0)
    return centre + (1 - follow) * (synthetic - centre) + follow * (patient - patient.mean(0))


def outline_floor(target: np.ndarray, patient: np.ndarray, tolerance: float) -> np.ndarray:
    """``target`` with no jaw point (0-16) more than ``tolerance`` pixels inside the patient's outline, along
    the outline's outward normal (moves along it and outwards stay). Beyond a narrower synthetic outline the
    blend keeps the patient's own cheek, and the synthetic face's edge shading then sits inside the face: a
    brown contour on the cheeks, a vertical edge at both jaw sides, and a smaller face for dlib's box."""
    target = np.asarray(target, np.float64).copy()
    jaw = np.asarray(patient, np.float64)[:17]
    centre = np.asarray(patient, np.float64)[27:36].mean(0)  # the nose line: inside every outline
    tangent = np.gradient(jaw, axis=0)
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-9)
    normal *= np.where(((jaw - centre) * normal).sum(1) < 0, -1.0, 1.0)[:, None]  # outwards
    inward = np.minimum(((target[:17] - jaw) * normal).sum(1) + tolerance, 0.0)
    target[:17] -= inward[:, None] * normal
    return target.astype(np.float32)


def keep_brow_height(target: np.ndarray, patient: np.ndarray, share: float) -> np.ndarray:
    """``target`` with each brow moved along the face's vertical axis (perpendicular to the patient's eye
    line) by ``share`` of the way to the patient's brow height above that brow's eye; the brows' shape,
    length and place across the face stay the target's. A donor shape fitted on all 68 points brought the
    brows down onto the eyes, and dlib's HOG box then read a smaller face (settings.brow_height)."""
    if share <= 0:
        return target
    target = np.asarray(target, np.float64).copy()
    patient = np.asarray(patient, np.float64)
    across = patient[42:48].mean(0) - patient[36:42].mean(0)
    across /= max(float(np.linalg.norm(across)), 1e-9)
    up = np.array([across[1], -across[0]])  # image rows grow downwards
    for brow, eye in ((slice(17, 22), slice(36, 42)), (slice(22, 27), slice(42, 48))):
        want = float(((patient[brow] - patient[eye].mean(0)) @ up).mean())
        have = float(((target[brow] - target[eye].mean(0)) @ up).mean())
        target[brow] += share * (want - have) * up
    return target.astype(np.float32)


# dlib's eye points: the two corners, then the upper and the lower lid (36 outer corner, 37-38 upper lid,
# 39 inner corner, 40-41 lower lid; the same order for the other eye from 42)
EYE_CORNERS, EYE_LIDS = (0, 3), (1, 2, 4, 5)


def keep_eye_opening(target: np.ndarray, patient: np.ndarray, floor: float) -> np.ndarray:
    """``target`` with each eye at least ``floor`` × as open as the patient's (0 = off): an eye's opening
    is the distance between its lids across the corner-to-corner line, in units of the eye's own width; a
    narrower eye has its lid points moved away from that line by one factor (the lids' curve, the corners,
    and so the eye's place, width and tilt stay the target's), and an eye open enough is left alone. The
    shape caricature of the strong rungs (×2.8-3) narrowed some eyes to slits, and the donors' lid and lash
    texture warped into them read as dark, heavy sockets (settings.eye_opening)."""
    if floor <= 0:
        return target
    target = np.asarray(target, np.float64).copy()
    patient = np.asarray(patient, np.float64)
    for first in (36, 42):
        eye = list(range(first, first + 6))
        want, have = floor * _opening(patient[eye]), _opening(target[eye])
        if have <= 0 or have >= want:
            continue
        corner, across = target[first], target[first + 3] - target[first]
        normal = np.array([-across[1], across[0]]) / max(float(across @ across), 1e-9)
        moves = {}
        for lid in EYE_LIDS:
            offset = float((target[first + lid] - corner) @ normal)  # in eye widths
            moves[lid] = (want / have - 1.0) * offset * np.array([-across[1], across[0]])
            target[first + lid] += moves[lid]
        # the brow above moves with the upper lid, so the lid does not fold into it
        target[EYE_BROWS[first]] += (moves[1] + moves[2]) / 2
    return target.astype(np.float32)


EYE_BROWS = {36: list(range(17, 22)), 42: list(range(22, 27))}  # each eye's brow (dlib's 68 points)


def _opening(eye: np.ndarray) -> float:
    """The eye's opening: mean lower-lid minus mean upper-lid distance from the corner line, in eye widths
    (dlib's order: 1-2 upper lid, 4-5 lower lid; positive for an open eye in image coordinates)."""
    corner, across = eye[EYE_CORNERS[0]], eye[EYE_CORNERS[1]] - eye[EYE_CORNERS[0]]
    normal = np.array([-across[1], across[0]]) / max(float(across @ across), 1e-9)
    offsets = [float((eye[lid] - corner) @ normal) for lid in EYE_LIDS]
    return abs((offsets[2] + offsets[3]) / 2 - (offsets[0] + offsets[1]) / 2)
