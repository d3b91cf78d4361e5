"""Fail-closed verification: an independent detector (dlib HOG) must still find the face, dlib's face
recognizer must not match the output to the input (distance above threshold + margin), and, when the engine
names a reference population of real faces, the input must not be the output's nearest face among them (a
linkage attacker's first guess)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anonymizer.faces.area import area_copy
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
    # population test: at least this many reference identities must lie nearer to the output than the input
    population_rank: int = 1
    same_identity: float = 0.45  # a reference identity this close to the input is the patient: left out
    # who computes the descriptors verification compares (the input's, the output's): "torch" = dlib's
    # network ported to torch (faces.descriptor_torch; ~0.01 instead of 0.063 s CPU per chip), "dlib" =
    # dlib's recognizer. The two agree within ~1e-6 (tests/faces/test_descriptor_torch.py demands 1e-4;
    # the margin is 0.05), and on eval_pixels draws A and B every verification outcome, distance, rung and
    # table cell stayed main's (docs/face-engine.md, 11r).
    descriptor: str = "torch"


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


def descriptor(image: np.ndarray, landmarks: np.ndarray, halve_from: float = 0.0) -> np.ndarray:
    """dlib 128-d face descriptor, computed on a face-sized, downscaled neighbourhood of the landmarks
    (``halve_from``: how it is downscaled, ``area.area_copy``'s; 0: one ``INTER_AREA`` pass)."""
    chip = face_chip(image, landmarks, halve_from)
    return np.asarray(dlib_models().recognizer.compute_face_descriptor(chip), np.float32)


def torch_descriptor(image: np.ndarray, landmarks: np.ndarray, halve_from: float = 0.0) -> np.ndarray:
    """``descriptor`` computed by the torch port of dlib's network on the same chip (faces.descriptor_torch;
    equal within float rounding, ~1e-6, tests/faces/test_descriptor_torch.py)."""
    from anonymizer.faces.descriptor_torch import descriptors  # lazily: torch loads on first use

    return descriptors([face_chip(image, landmarks, halve_from)])[0]


def face_chip(image: np.ndarray, landmarks: np.ndarray, halve_from: float = 0.0) -> np.ndarray:
    """The recognizer's aligned 150 px chip (dlib.get_face_chip) of a face-sized, downscaled neighbourhood
    of the landmarks: the input of dlib's descriptor and of its torch port (faces.descriptor_torch)."""
    import dlib

    x0, y0, x1, y1 = _roi_around(landmarks, image.shape, 0.4)
    roi = image[y0:y1, x0:x1]
    lm = np.asarray(landmarks, np.float64) - (x0, y0)
    scale = min(1.0, DESCRIPTOR_IOD / max(interocular(lm), 1.0))
    if scale < 1.0:
        roi = area_copy(roi, scale, halve_from)
        lm = lm * scale
    lo, hi = lm.min(0), lm.max(0)
    rect = dlib.rectangle(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1]))
    shape = dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in lm])
    return np.asarray(dlib.get_face_chip(np.ascontiguousarray(roi), shape, size=CHIP_SIZE, padding=0.25))


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))


def redetect(
    image: np.ndarray, landmarks: np.ndarray, long_side: int, halve_from: float = 0.0
) -> np.ndarray | None:
    """HOG-detect the face near ``landmarks`` and re-fit 68 landmarks on it; None if none is found."""
    x0, y0, x1, y1 = _roi_around(landmarks, image.shape, 0.6)
    roi = np.ascontiguousarray(image[y0:y1, x0:x1])
    small, scale = downscale(roi, long_side, halve_from)
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


def closer_than_input(
    after: np.ndarray,
    before: np.ndarray,
    reference: Sequence[np.ndarray],
    same_identity: float,
    slack: float = 0.0,
) -> tuple[int, int]:
    """(How many reference identities are nearer to the output than the input is, how many were usable).
    Each reference identity is an (n, 128) array of its photos' descriptors; its nearest photo counts.
    ``slack`` (the engine's self-check only): an identity counts only when nearer by at least this much."""
    own = distance(after, before) - slack
    usable = [
        r for r in reference if len(r) and np.linalg.norm(r - before[None], axis=1).min() > same_identity
    ]
    closer = sum(bool(np.linalg.norm(r - after[None], axis=1).min() < own) for r in usable)
    return closer, len(usable)


def verify_face(
    original: np.ndarray,
    output: np.ndarray,
    landmarks: np.ndarray,
    settings: VerifySettings,
    *,
    expect_face: bool = True,
    original_descriptor: np.ndarray | None = None,
    reference: Sequence[np.ndarray] = (),
    group_originals: Sequence[np.ndarray] = (),
    halve_from: float = 0.0,
) -> FaceCheck:
    """Check one anonymized face. ``expect_face`` is False for engines that remove the face (mask, blur);
    ``reference`` is the engine's population of real faces (none: no population test); ``group_originals``
    are the descriptors of the other original faces of the pairing group (the patient's other photos): an
    output that matches any of them is linked to the patient as surely as one that matches its own input.
    ``halve_from``: how the HOG copy and the descriptors' chips are downscaled (``area.area_copy``)."""
    describe = torch_descriptor if settings.descriptor == "torch" else descriptor
    if original_descriptor is not None:
        before = original_descriptor
    else:
        before = describe(original, landmarks, halve_from)
    found = redetect(output, landmarks, settings.detect_long_side, halve_from)
    if found is None and expect_face:
        return FaceCheck(False, float("nan"), False, "no-face-after-anonymization")
    after = describe(output, found if found is not None else landmarks, halve_from)
    dist = distance(before, after)
    if dist <= settings.threshold + settings.margin:
        return FaceCheck(found is not None, dist, False, "output-matches-input")
    if any(distance(other, after) <= settings.threshold + settings.margin for other in group_originals):
        return FaceCheck(found is not None, dist, False, "output-matches-patient-photo")
    if reference and settings.population_rank > 0:
        closer, usable = closer_than_input(after, before, reference, settings.same_identity)
        if usable >= settings.population_rank and closer < settings.population_rank:
            return FaceCheck(found is not None, dist, False, "output-links-to-input")
    return FaceCheck(found is not None, dist, True)
