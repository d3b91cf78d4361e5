"""Piecewise-affine warping between landmark shapes in the canonical crop (one remap per warp)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import Delaunay

from anonymizer.faces.regions import forehead_points


def border_points(size: int) -> np.ndarray:
    s = float(size - 1)
    h = s / 2
    return np.array([[0, 0], [h, 0], [s, 0], [s, h], [s, s], [h, s], [0, s], [0, h]], np.float32)


def extended(landmarks: np.ndarray, size: int) -> np.ndarray:
    """68 landmarks + 10 forehead points + 8 crop-border points: (86, 2)."""
    lm = np.asarray(landmarks, np.float32)
    return np.vstack([lm, forehead_points(lm), border_points(size)])


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles (T, 3) of a reference shape; reuse them for every shape of the same topology."""
    return Delaunay(np.asarray(points, np.float64)).simplices.astype(np.int32)


def _affines(src: np.ndarray, dst: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Per-triangle 2x3 affine mapping dst → src: (T, 2, 3)."""
    d = np.concatenate([dst[tris], np.ones((len(tris), 3, 1))], axis=2)  # (T, 3, 3)
    s = src[tris]  # (T, 3, 2)
    det = np.linalg.det(d)
    d[np.abs(det) < 1e-6] += np.eye(3) * 1e-3  # degenerate triangles: tiny nudge, never NaN
    sol = np.linalg.solve(d, s)  # (T, 3, 2): d @ sol = s
    return np.transpose(sol, (0, 2, 1))


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) float32 pixel coordinates of a size x size crop (read-only, shared by every warp)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def piecewise_affine(
    image: np.ndarray, src: np.ndarray, dst: np.ndarray, tris: np.ndarray, size: int
) -> np.ndarray:
    """Warp ``image`` so that points ``src`` move to ``dst``; output (size, size, C)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    index = np.full((size, size), -1, np.int32)
    for t, tri in enumerate(tris):
        cv2.fillConvexPoly(index, np.round(dst[tri] * 16).astype(np.int32), t, lineType=cv2.LINE_8, shift=4)
    mats = _affines(src, dst, tris)
    ys, xs = _grid(size)
    idx = np.where(index < 0, 0, index)
    # each coefficient gathered on its own: the same float64 sums as gathering the (S, S, 2, 3) matrices,
    # without their 12 MB copy (~3 ms of ~11 per 512 px warp)
    m = [np.take(coefficient, idx) for coefficient in mats.reshape(len(mats), 6).T]
    map_x = m[0] * xs + m[1] * ys + m[2]
    map_y = m[3] * xs + m[4] * ys + m[5]
    outside = index < 0
    map_x[outside] = xs[outside]
    map_y[outside] = ys[outside]
    return cv2.remap(
        image,
        map_x.astype(np.float32),
        map_y.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
