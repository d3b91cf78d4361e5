"""Downscaled ``INTER_AREA`` copies of a photo, made cheaply at large ratios.

OpenCV computes ``INTER_AREA`` at a non-integer ratio with a scalar float loop (~35 ms CPU for a 12 MP photo
down to MTCNN's 480 px), but a 2:1 halving with its SIMD fast path (~3.5 ms for 12 MP). At a ratio of at
least ``halve_from`` the copy is halved first, as often as the ratio stays at least ``halve_from``, and the
rest (a ratio of ``halve_from`` / 2 up to ``halve_from``) is one general pass over a quarter, or a sixteenth,
of the pixels. Each halving's cell is two source pixels wide, so the final cells cover the same source area
as one pass would; only a source pixel cut by a cell's edge counts as its pair's mean, and the halvings round
to whole levels: the copy differs from one pass by a fraction of a level on average (docs/face-engine.md,
issue-11x13). Below ``halve_from`` (the London set's 1350 px photos: ratios 2.1-3.8) the copy is one pass.
"""

from __future__ import annotations

import cv2
import numpy as np


def area_copy(image: np.ndarray, scale: float, halve_from: float = 0.0) -> np.ndarray:
    """``cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)`` (``scale`` < 1), by 2:1
    halvings first while the ratio ``1 / scale`` is at least ``halve_from`` (0: one pass, bit for bit)."""
    while halve_from > 0 and scale * halve_from <= 1.0:
        # fx = 0.5 exactly takes OpenCV's fast path; an odd side's last pixel is kept as a cell of its own
        # or dropped (OpenCV rounds the half size to even): at most one source pixel at the border
        image = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        scale *= 2.0  # exact in binary: the final pass's cells are 1 / scale source pixels, as one pass's
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
