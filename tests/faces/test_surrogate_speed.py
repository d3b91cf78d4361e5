"""Per-rung speed-ups of the surrogate engine give exactly the values of the plain computation."""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.engines.surrogate_colour import _blur_window


def test_a_blur_inside_the_features_window_equals_the_whole_crops_blur() -> None:
    rng = np.random.default_rng(3)
    for sigma, (y, x) in ((4.4, (300, 200)), (1.3, (2, 500)), (9.7, (505, 3))):  # middle, edges, corners
        mask = np.zeros((512, 512), bool)
        spots = rng.random((512, 512)) > 0.3
        box = (slice(max(0, y - 6), y + 7), slice(max(0, x - 9), x + 10))
        mask[box] = spots[box]
        whole = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
        y0, y1, x0, x1 = _blur_window(mask, sigma)
        window = cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32), (0, 0), sigma)
        # equal up to float rounding (OpenCV's vector code ends rows of other widths differently):
        # a millionth of a weight is far below a level of colour
        assert np.abs(window - whole[y0:y1, x0:x1]).max() < 1e-6
        outside = whole.copy()
        outside[y0:y1, x0:x1] = 0
        assert not outside.any()  # nothing of the blur lies outside the window

