"""Per-photo and per-pair metrics; ``bench/eval_pixels.py`` aggregates them into the report table.

Identity metrics use dlib's ResNet descriptor at its 0.6 same-person threshold. Region metrics compare the
output with the input inside the preserved-region mask, before and after JPEG re-encoding.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from anonymizer.faces.detect import detect_faces, hog_detect
from anonymizer.faces.regions import interocular, region_mask
from anonymizer.faces.verify import descriptor, distance
from anonymizer.plans import Region

SAME_PERSON = 0.6
REGION_POINTS = {
    Region.MOUTH: slice(48, 68),
    Region.NOSE: slice(27, 36),
    Region.EYES: slice(36, 48),
    Region.BROWS: slice(17, 27),
    Region.FACE: slice(0, 68),
}


@dataclass
class PhotoMetrics:
    id_distance: float  # original ↔ output, same photo
    mtcnn_found: bool
    hog_found: bool
    descriptor: np.ndarray
    region_l1: float = float("nan")
    region_psnr: float = float("nan")  # before re-encoding
    region_psnr_jpeg: float = float("nan")  # after JPEG q95
    region_iou: float = float("nan")  # region mask from output landmarks vs input landmarks
    landmark_offset: float = float("nan")  # region landmarks output vs input, ÷ inter-ocular distance
    landmarks_out: np.ndarray | None = None  # (68, 2) landmarks re-fitted on the output (MTCNN box)
    box_out: tuple[int, int, int, int] | None = None  # MTCNN box on the output, None when none was found
    extras: dict[str, float] = field(default_factory=dict)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)) if a.size else 0.0
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def jpeg_round_trip(image: np.ndarray, quality: int = 95) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=1)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def output_face(
    output: np.ndarray, fallback_landmarks: np.ndarray
) -> tuple[np.ndarray, tuple[int, int, int, int] | None]:
    """Landmarks and box of the face MTCNN re-detects in the output, else the input's landmarks and None."""
    faces = detect_faces(output, fallback_hog=False)
    if not faces:
        return fallback_landmarks, None
    centre = np.asarray(fallback_landmarks).mean(0)
    best = min(faces, key=lambda f: float(np.linalg.norm(f.landmarks.mean(0) - centre)))
    return best.landmarks, best.box


def photo_metrics(
    original: np.ndarray,
    output: np.ndarray,
    landmarks: np.ndarray,
    before: np.ndarray,
    preserve: tuple[Region, ...],
) -> PhotoMetrics:
    out_lm, box = output_face(output, landmarks)
    after = descriptor(output, out_lm)
    m = PhotoMetrics(distance(before, after), box is not None, bool(hog_detect(output)), after)
    m.landmarks_out, m.box_out = out_lm, box
    if preserve:
        _region_metrics(m, original, output, landmarks, out_lm, preserve)
    return m


def _region_metrics(
    m: PhotoMetrics,
    original: np.ndarray,
    output: np.ndarray,
    lm: np.ndarray,
    out_lm: np.ndarray,
    preserve: tuple[Region, ...],
) -> None:
    shape = original.shape[:2]
    keep = region_mask(lm, preserve, shape)
    a, b = original[keep], output[keep]
    m.region_l1 = float(np.abs(a.astype(int) - b.astype(int)).mean())
    m.region_psnr = psnr(a, b)
    m.region_psnr_jpeg = psnr(a, jpeg_round_trip(output)[keep])
    again = region_mask(out_lm, preserve, shape)
    m.region_iou = float((keep & again).sum() / max(1, (keep | again).sum()))
    idx = np.r_[tuple(np.arange(68)[REGION_POINTS[r]] for r in preserve)]
    m.landmark_offset = float(np.linalg.norm(out_lm[idx] - lm[idx], axis=1).mean() / interocular(lm))


def donor_leak(output_descriptor: np.ndarray, donor_descriptors: np.ndarray) -> tuple[bool, float]:
    """Does the output match any donor photo? Returns (match, nearest distance)."""
    if len(donor_descriptors) == 0:
        return False, float("inf")
    d = np.linalg.norm(donor_descriptors - output_descriptor[None], axis=1)
    return bool(d.min() <= SAME_PERSON), float(d.min())


def read_tem(path: str) -> np.ndarray:
    """Psychomorph/WebMorph template: first line the point count, then ``x y`` lines: (N, 2)."""
    with open(path) as fh:
        n = int(fh.readline())
        return np.array([[float(v) for v in fh.readline().split()[:2]] for _ in range(n)], np.float32)


TEM_MOUTH_OUTER = (87, 88, 89, 90, 91, 92, 93, 108, 107, 106, 105, 104)  # FRL 189-point template
TEM_PUPILS = (0, 1)


def template_agreement(landmarks: np.ndarray, tem: np.ndarray, shape: tuple[int, int]) -> dict[str, float]:
    """Mouth-mask IoU (no margin) and pupil offset (÷ inter-ocular) of dlib landmarks vs a hand template."""
    import cv2

    from anonymizer.faces.regions import RegionSettings

    ours = region_mask(landmarks, [Region.MOUTH], shape, settings=RegionSettings(0.0))
    theirs = np.zeros(shape, np.uint8)
    cv2.fillPoly(theirs, [np.round(tem[list(TEM_MOUTH_OUTER)]).astype(np.int32)], 1)
    theirs_b = theirs.astype(bool)
    iou = float((ours & theirs_b).sum() / max(1, (ours | theirs_b).sum()))
    lm = np.asarray(landmarks, np.float64)
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    offset = float(np.linalg.norm(eyes - tem[list(TEM_PUPILS)], axis=1).mean() / interocular(lm))
    return {"mouth_iou": iou, "pupil_offset": offset}
