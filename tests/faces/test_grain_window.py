"""The grain's skin mask erodes the face outline by a distance transform on the outline's box
(faces/grain.py ``_deeper_than``, issue-11t10): the same mask, pixel for pixel, as the transform of the whole
ROI that it replaced, for outlines of several sizes, ones that touch the ROI's edges, and an empty one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer.faces.grain import _deeper_than


def _whole(inside: np.ndarray, depth: float) -> np.ndarray:
    """The former formula: the transform over the whole ROI."""
    return cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) > depth


def _outline(rng: np.random.Generator, shape: tuple[int, int], reach: float) -> np.ndarray:
    """A convex polygon (a face outline's kind) of random points round a random centre, filled; ``reach``
    beyond 0.5 lets it run past the ROI's edges."""
    h, w = shape
    centre = rng.uniform(0.3, 0.7, 2) * (w, h)
    radii = rng.uniform(0.2, reach, (24, 1)) * (w, h)
    angles = rng.uniform(0, 2 * np.pi, 24)
    points = centre + radii * np.column_stack([np.cos(angles), np.sin(angles)])
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [cv2.convexHull(np.round(points).astype(np.int32))], 1)
    return mask


@pytest.mark.parametrize("reach", [0.4, 0.8])
def test_the_eroded_outline_on_its_box_is_the_whole_rois_bit_for_bit(reach: float) -> None:
    rng = np.random.default_rng(11)
    for shape in ((300, 260), (620, 540), (1349, 1156)):
        for _ in range(4):
            inside = _outline(rng, shape, reach)
            for inset in (1, 7, int(0.15 * shape[1] * 0.4), 93):
                assert np.array_equal(_deeper_than(inside, inset + 0.5), _whole(inside, inset + 0.5))


def test_an_empty_outline_leaves_no_skin() -> None:
    empty = np.zeros((90, 120), np.uint8)
    assert not _deeper_than(empty, 3.5).any()
