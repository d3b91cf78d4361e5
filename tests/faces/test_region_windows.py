"""Region dilation and the seam's feather run their distance transforms on the window the region can reach
only; the masks must equal those of the whole-ROI transforms pixel for pixel (every setting, ROI edges), the
feather's alpha up to float rounding (OpenCV's 5x5 chamfer sums differ in the last bit on a few pixels)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer.faces.regions import RegionSettings, feather_out, interocular, region_mask
from anonymizer.plans import Region


def _face(scale: float, shift: tuple[float, float]) -> np.ndarray:
    """68 landmarks of a plausible frontal face (iBUG order), scaled and moved."""
    t = np.linspace(np.pi, 2 * np.pi, 17)
    jaw = np.stack([100 - 90 * np.cos(t), 120 - 110 * np.sin(t) * 0.9], 1)
    brows = np.stack([np.r_[np.linspace(30, 85, 5), np.linspace(115, 170, 5)], np.full(10, 60.0)], 1)
    nose_x = np.r_[np.full(4, 100.0), np.linspace(85, 115, 5)]
    nose = np.stack([nose_x, np.r_[np.linspace(75, 120, 4), np.full(5, 130)]], 1)
    eye = np.array([[0, 0], [8, -5], [18, -5], [26, 0], [18, 4], [8, 4]], float)
    eyes = np.vstack([eye + np.array([45.0, 85.0]), eye + np.array([129.0, 85.0])])
    mouth_t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    outer = np.stack([100 + 32 * np.cos(mouth_t), 165 + 12 * np.sin(mouth_t)], 1)
    inner = np.stack([100 + 22 * np.cos(mouth_t[:8]), 165 + 5 * np.sin(mouth_t[:8])], 1)
    lm = np.vstack([jaw, brows, nose, eyes, outer, inner])
    assert lm.shape == (68, 2)
    return (lm * scale + shift).astype(np.float32)


def _whole_dilation(
    lm: np.ndarray, regions: list[Region], shape: tuple[int, int], offset: tuple[int, int], margin: float
) -> np.ndarray:
    hard = region_mask(lm, regions, shape, offset, RegionSettings(0.0))
    radius = margin * interocular(lm)
    dist = cv2.distanceTransform((1 - hard).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return dist <= radius


@pytest.mark.parametrize("regions", [[Region.MOUTH], [Region.NOSE], [Region.EYES], [Region.FACE]])
@pytest.mark.parametrize("offset", [(0, 0), (60, 40), (-30, -20)])
def test_dilated_regions_equal_the_whole_roi_transform(regions: list[Region], offset: tuple[int, int]):
    lm = _face(2.3, (120.0, 90.0))
    shape = (560, 600)
    for margin in (0.1, 0.25, 0.6):
        got = region_mask(lm, regions, shape, offset, RegionSettings(margin))
        assert got.any()
        assert np.array_equal(got, _whole_dilation(lm, regions, shape, offset, margin)), (regions, margin)


@pytest.mark.parametrize("width", [3.0, 17.5, 60.0])
def test_feather_equals_the_whole_roi_transform(width: float) -> None:
    rng = np.random.default_rng(5)
    for _ in range(6):
        hard = np.zeros((300, 340), bool)
        for _ in range(3):  # a few blobs, some against the edge
            y, x = rng.integers(0, 300), rng.integers(0, 340)
            hard[max(0, y - 12) : y + rng.integers(2, 40), max(0, x - 9) : x + rng.integers(2, 50)] = True
        dist = cv2.distanceTransform((~hard).astype(np.uint8), cv2.DIST_L2, 5)
        whole = np.clip(1.0 - dist / width, 0.0, 1.0).astype(np.float32)
        whole[hard] = 1.0
        got = feather_out(hard, width)
        assert np.abs(got - whole).max() <= 1e-6 and np.array_equal(got > 0, whole > 0)
