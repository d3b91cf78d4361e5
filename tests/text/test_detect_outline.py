"""``detect._outline``: each row's two ends stand in for all of a component's pixels (issue-11x10)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer.text import components
from anonymizer.text.detect import _outline


def _blobs(seed: int) -> list[np.ndarray]:
    """Box masks of the components of random rotated bars, discs and scribbles (smear- and glyph-like)."""
    rng = np.random.default_rng(seed)
    canvas = np.zeros((480, 640), np.uint8)
    for _ in range(12):
        centre = tuple(float(v) for v in rng.uniform(10, 620, 2))
        size = tuple(float(v) for v in rng.uniform(2, 50, 2))
        box = cv2.boxPoints((centre, size, float(rng.uniform(-90, 90)))).astype(np.int32)
        cv2.fillPoly(canvas, [box], 1)
        cv2.circle(canvas, tuple(int(v) for v in rng.integers(0, 640, 2)), int(rng.integers(1, 12)), 1, -1)
        pts = (rng.integers(20, 440, (1, 2)) + rng.integers(-25, 25, (4, 2))).astype(np.int32)
        cv2.polylines(canvas, [pts], False, 1, int(rng.integers(1, 4)))
    _, labels, stats, _ = components.with_stats(canvas)
    return [labels[y : y + h, x : x + w] == i for i, (x, y, w, h, _) in enumerate(stats) if i]


@pytest.mark.parametrize("seed", range(6))
def test_row_ends_give_all_pixels_rotated_rectangle_and_extent(seed: int) -> None:
    masks = _blobs(seed)
    assert len(masks) >= 10
    for mask in masks:
        ys, xs = np.nonzero(mask)
        every = np.column_stack([xs + 7, ys + 3]).astype(np.float32)
        ex, ey = _outline(mask)
        ends = np.column_stack([ex + 7, ey + 3]).astype(np.float32)
        assert len(ends) <= len(every)
        assert cv2.minAreaRect(ends) == cv2.minAreaRect(every)
        for deg in (-37.0, 0.0, 12.5, 60.0):
            direction = np.array([np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))])
            assert (ends @ direction).max() == (every @ direction).max()
            assert (ends @ direction).min() == (every @ direction).min()


def test_row_ends_of_a_hollow_shape_are_each_rows_first_and_last_pixel() -> None:
    ring = np.zeros((9, 9), bool)
    ring[[0, -1], :] = True
    ring[:, [0, -1]] = True
    ring[4, 4] = True  # an inner pixel is neither end of its row
    xs, ys = _outline(ring)
    assert sorted(zip(xs.tolist(), ys.tolist(), strict=True)) == sorted(
        [(0, r) for r in range(9)] + [(8, r) for r in range(9)]
    )
    single = np.zeros((3, 4), bool)
    single[1, 2] = True
    assert [a.tolist() for a in _outline(single)] == [[2], [1]]  # one pixel: one point, not two
