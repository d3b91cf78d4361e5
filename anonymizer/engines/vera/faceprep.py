"""Training-data preparation: dlib 68 landmarks, canonical alignment and landmark-derived class masks.

The engine re-aligns every crop it receives to its own canonical frame with :func:`canonical_transform`
(so it does not depend on the pipeline's crop convention) and warps its output back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from anonymizer.engines.vera.classes import CLASS_INDEX

log = logging.getLogger(__name__)

# Canonical frame (fractions of the crop side): eye centres and mouth centre.
CANON_EYE_L = (0.38, 0.40)
CANON_EYE_R = (0.62, 0.40)
CANON_MOUTH = (0.50, 0.64)


@dataclass(frozen=True)
class LandmarkedPhoto:
    path: Path
    landmarks: np.ndarray  # (68, 2) float32, full-photo pixel coordinates (x, y)


def _dlib_models() -> tuple[object, object]:
    import dlib  # local import: heavy, and only training / data prep needs it
    import face_recognition_models as frm

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_model_location())
    return detector, predictor


def detect_landmarks(image: np.ndarray, models: tuple[object, object] | None = None) -> np.ndarray | None:
    """68 dlib landmarks of the largest face in an RGB uint8 image, or None when no face is found."""
    import dlib

    assert image.ndim == 3 and image.shape[2] == 3, image.shape
    detector, predictor = models or _dlib_models()
    scale = min(1.0, 640.0 / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    boxes = detector(small, 1)  # type: ignore[operator]
    if not boxes:
        return None
    box = max(boxes, key=lambda b: b.width() * b.height())
    rect = dlib.rectangle(
        int(box.left() / scale), int(box.top() / scale), int(box.right() / scale), int(box.bottom() / scale)
    )
    shape = predictor(image, rect)  # type: ignore[operator]
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"unreadable image: {path.name}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def landmark_cache(folder: Path, cache_file: Path) -> list[LandmarkedPhoto]:
    """Landmarks for every photo in a folder, computed once and cached as JSON (file name → points)."""
    cache: dict[str, list[list[float]]] = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    models = None
    for path in sorted(folder.glob("*.jpg")) + sorted(folder.glob("*.png")):
        if path.name in cache:
            continue
        models = models or _dlib_models()
        points = detect_landmarks(read_rgb(path), models)
        cache[path.name] = points.tolist() if points is not None else []
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_text(json.dumps(cache))
    return [
        LandmarkedPhoto(folder / name, np.asarray(pts, dtype=np.float32))
        for name, pts in sorted(cache.items())
        if pts
    ]


def canonical_transform(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(2, 3) similarity matrix mapping photo pixels to the canonical crop of side ``size``."""
    assert landmarks.shape == (68, 2), landmarks.shape
    src = np.stack([landmarks[36:42].mean(0), landmarks[42:48].mean(0), landmarks[48:60].mean(0)])
    dst = np.array([CANON_EYE_L, CANON_EYE_R, CANON_MOUTH], dtype=np.float32) * size
    matrix, _ = cv2.estimateAffinePartial2D(src.astype(np.float32), dst, method=cv2.LMEDS)
    if matrix is None or not np.isfinite(matrix).all():
        raise ValueError("landmarks do not define a similarity alignment")
    return matrix.astype(np.float64)


def warp_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def align(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Canonical crop (size, size, 3) uint8 and its landmarks (68, 2)."""
    matrix = canonical_transform(landmarks, size)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    return crop, warp_points(landmarks, matrix)


def _poly(label: np.ndarray, points: np.ndarray, value: int, scale: float = 1.0) -> None:
    centre = points.mean(0)
    pts = (points - centre) * scale + centre
    cv2.fillPoly(label, [np.round(pts * 16).astype(np.int32)], value, lineType=cv2.LINE_8, shift=4)


def _background(crop: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Background by GrabCut seeded with the border (probable background) and the face (sure foreground)."""
    s = crop.shape[0]
    k = max(2, s // 20)
    seed = np.full((s, s), cv2.GC_PR_FGD, np.uint8)
    seed[:k, :] = seed[:, :k] = seed[:, -k:] = cv2.GC_PR_BGD
    seed[:k, :] = cv2.GC_BGD
    inner = np.isin(label, [CLASS_INDEX[c] for c in ("skin", "neck", "eyes", "nose", "mouth", "brows")])
    seed[inner] = cv2.GC_FGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(np.ascontiguousarray(crop[..., ::-1]), seed, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
    return np.isin(seed, [cv2.GC_BGD, cv2.GC_PR_BGD])


def class_mask(crop: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(S, S) uint8 label map over the VerA classes, derived from 68 landmarks and the plain background."""
    s = crop.shape[0]
    eye_dist = float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
    chin_y = float(lm[8, 1])
    ys = np.arange(s)[:, None].repeat(s, 1)
    label = np.full((s, s), CLASS_INDEX["hair"], np.uint8)
    label[ys > chin_y + 0.55 * eye_dist] = CLASS_INDEX["cloth"]
    neck_y = chin_y + 0.9 * eye_dist
    neck = np.array([lm[4], lm[12], [lm[12, 0], neck_y], [lm[4, 0], neck_y]])
    _poly(label, neck, CLASS_INDEX["neck"])
    for side in (slice(0, 4), slice(13, 17)):
        jaw = lm[side]
        ear_c = jaw.mean(0) + (jaw.mean(0) - lm[30]) * 0.12
        cv2.ellipse(label, (int(ear_c[0]), int(ear_c[1])), (int(0.16 * eye_dist), int(0.42 * eye_dist)),
                    0, 0, 360, CLASS_INDEX["ears"], -1)
    forehead = lm[26:16:-1] - np.array([0.0, 0.55 * eye_dist])
    _poly(label, np.concatenate([lm[0:17], forehead]), CLASS_INDEX["skin"])
    _poly(label, np.concatenate([lm[27:28], lm[31:36]]), CLASS_INDEX["nose"], 1.15)
    for eye in (lm[36:42], lm[42:48]):
        _poly(label, eye, CLASS_INDEX["eyes"], 1.35)
    for brow in (lm[17:22], lm[22:27]):
        cv2.polylines(label, [np.round(brow).astype(np.int32)], False, CLASS_INDEX["brows"],
                      max(1, round(0.14 * eye_dist)))
    _poly(label, lm[48:60], CLASS_INDEX["mouth"])
    outer = np.isin(label, [CLASS_INDEX[c] for c in ("hair", "cloth", "neck", "ears")])
    label[_background(crop, label) & outer] = CLASS_INDEX["background"]
    return label
