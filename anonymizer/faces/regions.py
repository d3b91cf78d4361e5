"""Region masks (mouth, nose, eyes, brows, face) from 68 landmarks, dilated by a margin.

A :class:`RegionProvider` turns a face into binary masks; :class:`LandmarkRegions` is the weight-free default,
and a learned face parser (the VerA smp parser) can serve the same interface instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from anonymizer.plans import Region

JAW = slice(0, 17)
BROW_R, BROW_L = slice(17, 22), slice(22, 27)
NOSE = slice(27, 36)
EYE_R, EYE_L = slice(36, 42), slice(42, 48)
MOUTH_OUTER = slice(48, 60)


def interocular(landmarks: np.ndarray) -> float:
    lm = np.asarray(landmarks, np.float64)
    return float(np.linalg.norm(lm[EYE_R].mean(0) - lm[EYE_L].mean(0)))


def forehead_points(landmarks: np.ndarray, height: float = 0.55) -> np.ndarray:
    """10 points above the brows, ``height`` × (brow-to-nose-base) up, rounded at the temples: (10, 2)."""
    lm = np.asarray(landmarks, np.float64)
    brows = lm[17:27]
    brow_mid = brows.mean(0)
    up = brow_mid - lm[8]
    up /= np.linalg.norm(up) + 1e-9
    lift = height * np.linalg.norm(brow_mid - lm[33])
    t = np.linspace(-1.0, 1.0, 10)
    bump = 0.55 + 0.45 * np.cos(t * np.pi / 2)
    return (brows + up[None, :] * (lift * bump)[:, None]).astype(np.float32)


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """Convex outline of jaw + forehead: the area an engine replaces."""
    pts = np.vstack([np.asarray(landmarks, np.float32)[JAW], forehead_points(landmarks)])
    return cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2)


def _polygons(region: Region, lm: np.ndarray) -> list[np.ndarray]:
    if region is Region.MOUTH:
        return [lm[MOUTH_OUTER]]
    if region is Region.NOSE:
        # bridge + wings: widen the alar points sideways, the dlib points sit inside the nostrils
        nose = lm[NOSE].copy()
        centre = nose[6]
        nose[4:9] = centre + (nose[4:9] - centre) * np.array([1.45, 1.15])
        return [cv2.convexHull(nose.astype(np.float32)).reshape(-1, 2)]
    if region is Region.EYES:
        return [lm[EYE_R], lm[EYE_L]]
    if region is Region.BROWS:
        return [_thicken(lm[BROW_R]), _thicken(lm[BROW_L])]
    return [face_outline(lm)]


def _thicken(brow: np.ndarray, frac: float = 0.12) -> np.ndarray:
    width = float(np.linalg.norm(brow[-1] - brow[0]))
    lift = np.array([0.0, frac * width])
    return np.vstack([brow - lift, brow[::-1] + 0.6 * lift])


@dataclass(frozen=True)
class RegionSettings:
    margin: float = 0.10  # dilation, as a fraction of the inter-ocular distance
    eyes_include_brows: bool = False


def region_mask(
    landmarks: np.ndarray,
    regions: Iterable[Region],
    shape: tuple[int, int],
    offset: tuple[int, int] = (0, 0),
    settings: RegionSettings = RegionSettings(),
) -> np.ndarray:
    """Union mask (H, W) bool of the regions, dilated by the margin; landmarks shifted by -offset."""
    # Geometry is computed in absolute coordinates and shifted by the integer offset only after rounding, so
    # a mask made for a ROI equals the same window of the full-image mask, pixel for pixel.
    lm = np.asarray(landmarks, np.float64)
    shift = np.asarray(offset, np.int64) * 4
    wanted = set(regions)
    if settings.eyes_include_brows and Region.EYES in wanted:
        wanted.add(Region.BROWS)
    mask = np.zeros(shape, np.uint8)
    for region in wanted:
        for poly in _polygons(region, lm):
            pts = (np.round(poly * 4).astype(np.int64) - shift).astype(np.int32)
            cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=2)
    radius = settings.margin * interocular(lm)
    if radius >= 0.5 and mask.any():
        # Euclidean dilation via a distance transform: O(pixels), whatever the radius
        ys, xs = _reach(mask, radius)
        out = np.zeros(shape, bool)
        window = (1 - mask[ys, xs]).astype(np.uint8)
        out[ys, xs] = cv2.distanceTransform(window, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= radius
        return out
    return mask.astype(bool)


def _reach(mask: np.ndarray, distance: float) -> tuple[slice, slice]:
    """The window of ``mask`` holding its set pixels and every pixel within ``distance`` of one. A distance
    transform there equals the whole mask's inside it (the nearest set pixel and the path to it lie inside),
    and a mouth's or nose's few pixels in a face-sized ROI of a 12 MP photo then cost a small window."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    pad = int(np.ceil(distance)) + 2
    return slice(max(0, y - pad), y + h + pad), slice(max(0, x - pad), x + w + pad)


class RegionProvider(Protocol):
    """Serves preserved-region masks for one face; a learned parser may replace the landmark default."""

    def masks(
        self,
        image: np.ndarray,
        landmarks: np.ndarray,
        regions: tuple[Region, ...],
        roi: tuple[int, int, int, int],
    ) -> np.ndarray:
        """(y1-y0, x1-x0) bool mask of the union of ``regions`` inside roi (x0, y0, x1, y1) of ``image``."""
        ...


@dataclass(frozen=True)
class LandmarkRegions:
    settings: RegionSettings = RegionSettings()

    def masks(
        self,
        image: np.ndarray,
        landmarks: np.ndarray,
        regions: tuple[Region, ...],
        roi: tuple[int, int, int, int],
    ) -> np.ndarray:
        x0, y0, x1, y1 = roi
        return region_mask(landmarks, regions, (y1 - y0, x1 - x0), (x0, y0), self.settings)


def feather_out(hard: np.ndarray, width: float) -> np.ndarray:
    """Alpha that is exactly 1 on ``hard`` and falls linearly to 0 over ``width`` pixels outside it."""
    if width <= 0 or not hard.any():
        return hard.astype(np.float32)
    ys, xs = _reach(hard, width)  # outside it the alpha is 0
    dist = cv2.distanceTransform((~hard[ys, xs]).astype(np.uint8), cv2.DIST_L2, 5)
    alpha = np.zeros(hard.shape, np.float32)
    alpha[ys, xs] = np.clip(1.0 - dist / float(width), 0.0, 1.0)
    alpha[hard] = 1.0
    return alpha
