"""piecewise_affine gathers each affine coefficient on its own (no (S, S, 2, 3) copy) and reuses one pixel
grid per crop size: the warp is bit-identical to gathering the whole matrices per pixel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer.faces.warp import _affines, extended, piecewise_affine, triangulate


def _whole_matrices(
    image: np.ndarray, src: np.ndarray, dst: np.ndarray, tris: np.ndarray, size: int
) -> np.ndarray:
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    index = np.full((size, size), -1, np.int32)
    for t, tri in enumerate(tris):
        cv2.fillConvexPoly(index, np.round(dst[tri] * 16).astype(np.int32), t, lineType=cv2.LINE_8, shift=4)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    m = _affines(src, dst, tris)[np.where(index < 0, 0, index)]
    map_x = m[..., 0, 0] * xs + m[..., 0, 1] * ys + m[..., 0, 2]
    map_y = m[..., 1, 0] * xs + m[..., 1, 1] * ys + m[..., 1, 2]
    map_x[index < 0], map_y[index < 0] = xs[index < 0], ys[index < 0]
    return cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_warp_equals_the_whole_matrix_gather(dtype: type) -> None:
    rng = np.random.default_rng(11)
    size = 192
    landmarks = rng.uniform(0.2 * size, 0.8 * size, (68, 2)).astype(np.float32)
    src = extended(landmarks, size)
    tris = triangulate(src)
    image = rng.uniform(0, 255, (size, size, 3)).astype(dtype)
    for scale in (0.0, 2.0, 6.0):  # identity, small and large moves (folds, degenerate triangles)
        dst = src + rng.normal(0, scale, src.shape).astype(np.float32)
        got = piecewise_affine(image, src, dst, tris, size)
        assert got.dtype == image.dtype
        assert np.array_equal(got, _whole_matrices(image, src, dst, tris, size))
    grey = np.ascontiguousarray(image[..., 0])
    expected = _whole_matrices(grey, src, dst, tris, size)
    assert np.array_equal(piecewise_affine(grey, src, dst, tris, size), expected)
