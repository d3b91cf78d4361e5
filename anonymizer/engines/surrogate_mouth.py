"""The synthetic mouth's interior (teeth) when the patient's mouth is open (settings.mouth_interior).

Donor textures live in the bank's reference shape, whose inner lips are a few pixels apart (the mean of
neutral and smiling photos): a donor's teeth are squashed into that slit, and the donor mix averages them
with the closed lips of most donors into a pink line. Warped out to a smiling patient's open mouth, the line
stretches into a pink blob with no teeth. Here the slit and the inner lip edges come from ONE donor photo of
the set, the one whose mouth is the most open, so the stretched interior shows that donor's teeth. Never from
the patient: teeth are taken from a consented donor as the skin detail is (surrogate_texture._with_detail).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from anonymizer.donors import DonorPhoto
from anonymizer.faces.regions import interocular

INNER_LIPS = list(range(60, 68))
# the lips' middle points above and below the mouth's interior (outer and inner line), each moved as a whole
UPPER_LIP, LOWER_LIP = [50, 51, 52, 61, 62, 63], [56, 57, 58, 65, 66, 67]


def cap_opening(target: np.ndarray, patient: np.ndarray, slack: float) -> np.ndarray:
    """``target`` with its inner lips no farther apart (points 62 and 66, in inter-ocular units of each
    shape) than the patient's plus ``slack``: both lips move towards each other by half the excess, their
    thickness kept. The expression transfer (surrogate_shape.ExpressionModel) reads a narrow donor mouth as
    less of a smile and opens it: 008's closed neutral mouth (0.7 px apart in the crop) came out 20 px
    open, his smile 32 px against his 12, and the shape-free texture has no interior to show there."""
    target = np.asarray(target, np.float64).copy()
    patient = np.asarray(patient, np.float64)
    scale = interocular(target) / max(interocular(patient), 1e-9)
    allowed = float(np.linalg.norm(patient[62] - patient[66])) * scale + slack * interocular(target)
    gap = target[66] - target[62]
    excess = float(np.linalg.norm(gap)) - allowed
    if excess <= 0:
        return target.astype(np.float32)
    step = 0.5 * excess * gap / max(float(np.linalg.norm(gap)), 1e-9)
    target[UPPER_LIP] += step
    target[LOWER_LIP] -= step
    return target.astype(np.float32)


def open_donor(donors: Sequence[Sequence[DonorPhoto]], least: float) -> DonorPhoto | None:
    """The photo of the set's donors whose inner lips are the farthest apart, when at least ``least``
    (÷ inter-ocular distance; ``DonorPhoto.expression``'s opening); None when no donor's mouth is open."""
    photos = [p for photos in donors for p in photos]
    best = max(photos, key=lambda p: float(p.expression[0]), default=None)
    if best is None or float(best.expression[0]) < least:
        return None
    return best


def cap_width(target: np.ndarray, patient: np.ndarray, slack: float) -> np.ndarray:
    """``target`` with its mouth (points 48-67) no wider (corners 48 and 54, in inter-ocular units of each
    shape) than the patient's plus ``slack``: squeezed along the line of its corners about its centre. The
    expression transfer widens the free mouth past the patient's (008: 144 px against his 124), and with
    its opening capped a wide closed mouth reads as a closed-lip smile (001_03, 013_03, eyes kept)."""
    target = np.asarray(target, np.float64).copy()
    patient = np.asarray(patient, np.float64)
    scale = interocular(target) / max(interocular(patient), 1e-9)
    allowed = float(np.linalg.norm(patient[54] - patient[48])) * scale + slack * interocular(target)
    across = target[54] - target[48]
    width = float(np.linalg.norm(across))
    if width <= allowed:
        return target.astype(np.float32)
    axis = across / max(width, 1e-9)
    mouth = list(range(48, 68))
    centre = target[mouth].mean(0)
    along = (target[mouth] - centre) @ axis
    target[mouth] -= (1.0 - allowed / width) * along[:, None] * axis
    return target.astype(np.float32)


def interior_weight(reference: np.ndarray, size: int) -> np.ndarray:
    """(S, S, 1) float32 weight of the mouth's interior in the bank's reference shape: the inner-lip
    polygon, grown to take the inner lip edges and feathered so that the donor's teeth meet the mix's lips
    without an edge."""
    iod = interocular(reference)
    inside = np.zeros((size, size), np.float32)
    cv2.fillPoly(inside, [np.round(reference[INNER_LIPS]).astype(np.int32)], 1.0)
    grow = int(0.06 * iod) | 1
    inside = cv2.dilate(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow)))
    return cv2.GaussianBlur(inside, (0, 0), 0.02 * iod)[..., None]


def with_interior(average: np.ndarray, interior: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``average`` (S, S, 3 float32) with the mouth's interior taken from ``interior`` (one donor's
    texture in the same tone) by ``weight``."""
    return (average + weight * (np.asarray(interior, np.float32) - average)).astype(np.float32)


# each mouth corner (outer, inner) and the lip points beside it, with the share of the corner's move they take
CORNERS = ((48, 60, 49, 59), (54, 64, 53, 55))
CORNER_SHARES = (1.0, 1.0, 0.5, 0.5)


def corner_lifts(landmarks: np.ndarray) -> np.ndarray:
    """(2,) how far each outer mouth corner (48, 54) lies above the lips' middle (points 51 and 57), along
    the face's up (across the eye line), in inter-ocular units: > 0 a smile's raised corners."""
    landmarks = np.asarray(landmarks, np.float64)
    up = _up(landmarks)
    middle = 0.5 * (landmarks[51] + landmarks[57])
    lifts = [float((landmarks[corner[0]] - middle) @ up) for corner in CORNERS]
    return np.array(lifts) / max(interocular(landmarks), 1e-9)


def keep_corners(target: np.ndarray, patient: np.ndarray, share: float) -> np.ndarray:
    """``target`` with each free mouth corner moved ``share`` of the way to the patient's corner lift
    (``corner_lifts``, each shape in its own units and frame), along the target's up; the lip points beside
    a corner take half its move. The donors' caricatured mouth (×3 on the nose-kept strong rungs) turned
    the corners down: 083's smile read as neutral by the bench's probe (lift −0.02 against her +0.005),
    042's smile −0.03 against +0.03 (issue-11q10)."""
    target = np.asarray(target, np.float64).copy()
    if share <= 0:
        return target.astype(np.float32)
    gap = corner_lifts(patient) - corner_lifts(target)
    up = _up(target)
    for points, move in zip(CORNERS, share * gap * interocular(target), strict=True):
        for point, part in zip(points, CORNER_SHARES, strict=True):
            target[point] += part * move * up
    return target.astype(np.float32)


def _up(landmarks: np.ndarray) -> np.ndarray:
    """The face's up in the image (unit vector across the eye line, towards the brows)."""
    across = landmarks[42:48].mean(0) - landmarks[36:42].mean(0)
    return np.array([across[1], -across[0]]) / max(float(np.linalg.norm(across)), 1e-9)
