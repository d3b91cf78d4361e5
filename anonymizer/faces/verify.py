"""Fail-closed verification: an independent detector (dlib HOG) must still find the face, and dlib's
face recognizer must not match the output to the input (distance above threshold + margin)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from anonymizer.faces.detect import _predict, downscale
from anonymizer.faces.models import dlib_models
from anonymizer.faces.regions import interocular

CHIP_SIZE = 150  # dlib recognizer input
DESCRIPTOR_IOD = 80.0  # faces are downscaled so that the inter-ocular distance is about this many pixels


@dataclass(frozen=True)
class VerifySettings:
    threshold: float = 0.6  # dlib's same-person threshold
    margin: float = 0.05  # required distance above it
    detect_long_side: int = 360  # the HOG check runs on the face neighbourhood at this size


@dataclass(frozen=True)
class FaceCheck:
    detected: bool
    distance: float
    passed: bool
    reason: str = ""  # "" when passed; a code otherwise (no PHI)


def _roi_around(landmarks: np.ndarray, shape: tuple[int, ...], grow: float) -> tuple[int, int, int, int]:
    lm = np.asarray(landmarks, np.float64)
    lo, hi = lm.min(0), lm.max(0)
    pad = grow * (hi - lo).max()
    h, w = shape[:2]
    x0, y0 = max(0, int(lo[0] - pad)), max(0, int(lo[1] - 1.5 * pad))
    return x0, y0, min(w, int(hi[0] + pad) + 1), min(h, int(hi[1] + pad) + 1)


def descriptor(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib 128-d face descriptor, computed on a face-sized, downscaled neighbourhood of the landmarks."""
    import dlib

    x0, y0, x1, y1 = _roi_around(landmarks, image.shape, 0.4)
    roi = image[y0:y1, x0:x1]
    lm = np.asarray(landmarks, np.float64) - (x0, y0)
    scale = min(1.0, DESCRIPTOR_IOD / max(interocular(lm), 1.0))
    if scale < 1.0:
        roi = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        lm = lm * scale
    lo, hi = lm.min(0), lm.max(0)
    rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    shape = dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in lm])
    chip = dlib.get_face_chip(np.ascontiguousarray(roi), shape, size=CHIP_SIZE, padding=0.25)
    return np.asarray(dlib_models().recognizer.compute_face_descriptor(chip), np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def redetect(image: np.ndarray, landmarks: np.ndarray, long_side: int) -> np.ndarray | None:
    """HOG-detect the face near ``landmarks`` and re-fit 68 landmarks on it; None if none is found."""
    x0, y0, x1, y1 = _roi_around(landmarks, image.shape, 0.6)
    roi = np.ascontiguousarray(image[y0:y1, x0:x1])
    small, scale = downscale(roi, long_side)
    rects = dlib_models().hog(small, 1)
    if not rects:
        return None
    centre = np.asarray(landmarks, np.float64).mean(0) - (x0, y0)
    best = min(
        rects,
        key=lambda r: np.hypot(
            (r.left() + r.right()) / 2 / scale - centre[0], (r.top() + r.bottom()) / 2 / scale - centre[1]
        ),
    )
    box = np.array([best.left(), best.top(), best.right(), best.bottom()], float) / scale
    import dlib

    pts = _predict(dlib_models().predictor, roi, box, dlib)
    return pts + np.array([x0, y0], np.float32)


def verify_face(
    original: np.ndarray,
    output: np.ndarray,
    landmarks: np.ndarray,
    settings: VerifySettings,
    *,
    expect_face: bool = True,
    original_descriptor: np.ndarray | None = None,
) -> FaceCheck:
    """Check one anonymized face. ``expect_face`` is False for engines that remove the face (mask, blur)."""
    before = original_descriptor if original_descriptor is not None else descriptor(original, landmarks)
    found = redetect(output, landmarks, settings.detect_long_side)
    if found is None and expect_face:
        return FaceCheck(False, float("nan"), False, "no-face-after-anonymization")
    after = descriptor(output, found if found is not None else landmarks)
    dist = distance(before, after)
    if dist <= settings.threshold + settings.margin:
        return FaceCheck(found is not None, dist, False, "output-matches-input")
    return FaceCheck(found is not None, dist, True)
