"""Similarity alignment to a canonical square crop, and the inverse warp for paste-back.

Canonical frame (fractions of the crop side) is the one the VerA engine uses: eye centres at
(0.365, 0.42) / (0.635, 0.42), mouth centre at (0.50, 0.70).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CANON = np.array([[0.365, 0.42], [0.635, 0.42], [0.50, 0.70]], dtype=np.float64)


def anchor_points(landmarks: np.ndarray) -> np.ndarray:
    """Eye centres and mouth centre from 68 landmarks: (3, 2)."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)])


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src → dst: (2, 3)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    a = (s * d).sum() / (s**2).sum()
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum() / (s**2).sum()
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (mu_d - rot @ mu_s)[:, None]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, np.float64)
    return (pts @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


@dataclass(frozen=True)
class Alignment:
    matrix: np.ndarray  # (2, 3) image → crop
    size: int

    @property
    def inverse(self) -> np.ndarray:
        return invert(self.matrix)


def canonical_alignment(landmarks: np.ndarray, size: int) -> Alignment:
    return Alignment(similarity(anchor_points(landmarks), CANON * size), size)


def crop(image: np.ndarray, alignment: Alignment) -> np.ndarray:
    """The aligned (S, S, 3) crop. Downscaling pre-blurs to avoid aliasing on large photos; only the crop's
    footprint is read (a 12 MP photo is neither copied nor blurred whole)."""
    scale = float(np.hypot(*alignment.matrix[:, 0]))
    src, matrix = image, alignment.matrix
    if scale < 0.5:
        sigma = 0.5 / scale * 0.5
        x0, y0, x1, y1 = footprint(alignment, image.shape, pad=int(4 * sigma) + 2)
        # the footprint holds every pixel the warp samples (with the blur's reach); where it is clipped it
        # ends at the photo's own edge, so reflecting there reflects the same pixels as before
        src = cv2.GaussianBlur(image[y0:y1, x0:x1], (0, 0), sigma)
        matrix = matrix.copy()
        matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], np.float64)
    return cv2.warpAffine(
        src,
        matrix,
        (alignment.size, alignment.size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )


def footprint(alignment: Alignment, shape: tuple[int, ...], pad: int = 0) -> tuple[int, int, int, int]:
    """Image-space bounding box (x0, y0, x1, y1) of the crop square, clipped to the image."""
    s = alignment.size
    corners = apply(alignment.inverse, np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64))
    return clip_box(corners.min(0), corners.max(0), shape, pad)


def clip_box(
    lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...], pad: int = 0
) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x0 = max(0, int(np.floor(lo[0])) - pad)
    y0 = max(0, int(np.floor(lo[1])) - pad)
    x1 = min(w, int(np.ceil(hi[0])) + pad + 1)
    y1 = min(h, int(np.ceil(hi[1])) + pad + 1)
    return x0, y0, x1, y1


def warp_crop_to_roi(
    crop_img: np.ndarray,
    alignment: Alignment,
    roi: tuple[int, int, int, int],
    *,
    interp: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """Inverse-warp a crop (or a float mask in crop space) into the image ROI (x0, y0, x1, y1) only."""
    x0, y0, x1, y1 = roi
    inv = alignment.inverse.copy()
    inv[:, 2] -= (x0, y0)
    return cv2.warpAffine(crop_img, inv, (x1 - x0, y1 - y0), flags=interp, borderMode=cv2.BORDER_REPLICATE)
