"""Face detection (MTCNN on a downscaled copy) and 68-point landmarks (dlib) at full resolution."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from anonymizer.faces.area import area_copy
from anonymizer.faces.models import dlib_models, mtcnn, one_torch_thread

log = logging.getLogger(__name__)

DETECT_LONG_SIDE = 480  # detection runs on a copy this size; landmarks use the full image
MIN_PROBABILITY = 0.92
MIN_FACE_FRACTION = 0.04  # of the downscaled long side: ignore tiny faces (background people, posters)


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in full-image pixels
    score: float
    landmarks: np.ndarray  # (68, 2) float32, full-image (x, y)
    detector: str  # "mtcnn" | "hog"


def downscale(image: np.ndarray, long_side: int, halve_from: float = 0.0) -> tuple[np.ndarray, float]:
    """A copy whose long side is at most ``long_side``, and the scale factor applied (``halve_from``:
    ``area.area_copy``'s; 0 is one ``INTER_AREA`` pass)."""
    scale = min(1.0, long_side / max(image.shape[:2]))
    if scale >= 1.0:
        return image, 1.0
    return area_copy(image, scale, halve_from), scale


def _mtcnn_boxes(small: np.ndarray) -> list[tuple[np.ndarray, float]]:
    with one_torch_thread():
        boxes, probs = mtcnn().detect(np.ascontiguousarray(small))
    if boxes is None:
        return []
    boxes = np.asarray(boxes, float)  # object dtype under numpy 2
    probs = np.asarray(probs, float)
    min_side = MIN_FACE_FRACTION * max(small.shape[:2])
    keep = []
    for box, prob in zip(boxes, probs, strict=True):
        if prob >= MIN_PROBABILITY and min(box[2] - box[0], box[3] - box[1]) >= min_side:
            keep.append((box, float(prob)))
    return keep


def _hog_boxes(small: np.ndarray, upsample: int) -> list[tuple[np.ndarray, float]]:
    rects, scores, _ = dlib_models().hog.run(np.ascontiguousarray(small), upsample, 0.0)
    return [
        (np.array([r.left(), r.top(), r.right(), r.bottom()], float), float(s))
        for r, s in zip(rects, scores, strict=True)
    ]


def landmarks_68(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib 68 landmarks inside ``box`` (full-image coordinates), refined once on the landmark box."""
    import dlib

    predictor = dlib_models().predictor
    # dlib copies whatever array it is given: hand it the face neighbourhood, not a 12 MP photo
    side = max(box[2] - box[0], box[3] - box[1])
    x0, y0 = max(0, int(box[0] - side)), max(0, int(box[1] - side))
    roi = np.ascontiguousarray(image[y0 : int(box[3] + side) + 1, x0 : int(box[2] + side) + 1])
    shift = np.array([x0, y0, x0, y0], np.float64)
    pts = _predict(predictor, roi, np.asarray(box, np.float64) - shift, dlib)
    # MTCNN boxes sit higher than the HOG boxes the predictor was trained on: re-fit on a HOG-like box.
    lo, hi = pts.min(0), pts.max(0)
    w = hi[0] - lo[0]
    refit = np.array([lo[0] - 0.02 * w, lo[1] - 0.10 * w, hi[0] + 0.02 * w, hi[1] + 0.02 * w])
    return _predict(predictor, roi, refit, dlib) + np.array([x0, y0], np.float32)


def _predict(predictor: object, image: np.ndarray, box: np.ndarray, dlib: object) -> np.ndarray:
    rect = dlib.rectangle(int(box[0]), int(box[1]), int(box[2]), int(box[3]))  # type: ignore[attr-defined]
    shape = predictor(image, rect)  # type: ignore[operator]
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def detect_faces(
    image: np.ndarray, *, fallback_hog: bool = True, halve_from: float = 0.0
) -> list[DetectedFace]:
    """All faces in an RGB uint8 image, largest first. MTCNN first; dlib HOG only when MTCNN finds none.
    ``halve_from``: how the detector's copy is made (``area.area_copy``; 0: one ``INTER_AREA`` pass)."""
    assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8, (image.shape, image.dtype)
    small, scale = downscale(image, DETECT_LONG_SIDE, halve_from)
    found, detector = _mtcnn_boxes(small), "mtcnn"
    if not found and fallback_hog:
        found, detector = _hog_boxes(small, 1), "hog"
        if found:
            log.info("face detector fallback", extra={"detector": "hog", "faces": len(found)})
    faces = []
    for box, score in found:
        full = box / scale
        pts = landmarks_68(image, full)
        x0, y0, x1, y1 = (round(v) for v in full)
        faces.append(DetectedFace((x0, y0, x1, y1), score, pts, detector))
    faces.sort(key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return faces


def hog_detect(image: np.ndarray, long_side: int = 480, upsample: int = 1) -> list[tuple[int, int, int, int]]:
    """The independent verification detector (dlib HOG) on a downscaled copy; boxes in full-image pixels."""
    small, scale = downscale(image, long_side)
    return [tuple(round(v / scale) for v in box) for box, _ in _hog_boxes(small, upsample)]  # type: ignore[misc]
