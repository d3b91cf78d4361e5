"""Photo-scale grain for synthetic faces: an engine's crop is often coarser than the photo (a 512 crop pasted
into a 12 MP portrait is upsampled), so its skin lacks the photo's finest band (pores at pixel scale, sensor
grain) and reads as airbrushed next to the untouched neck and ears.

Only a statistic of the patient's photo is used (the robust spread of its finest band on cheek and forehead
skin), never its pixels: the added grain is seeded noise, so no mole, scar or pore pattern of the patient
travels into the output.
"""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.faces.regions import RegionSettings, interocular, region_mask
from anonymizer.faces.skin import SkinSource, quilt
from anonymizer.plans import Region

FINE_SIGMA = 1.0  # the finest band: image minus its blur at this sigma (pixels)
MAX_GRAIN = 6.0  # at most this spread of added grain (8-bit levels): a bearded cheek is no skin reference
MAX_DETAIL = 9.0  # at most this spread of added donor skin detail (8-bit levels), same reason
_FEATURES = (Region.EYES, Region.BROWS, Region.NOSE, Region.MOUTH)


def _fine(gray: np.ndarray) -> np.ndarray:
    return gray - cv2.GaussianBlur(gray, (0, 0), FINE_SIGMA)


def _spread(values: np.ndarray) -> float:
    """Robust standard deviation (1.4826 × median absolute value): stray hairs do not inflate it."""
    return float(1.4826 * np.median(np.abs(values))) if values.size else 0.0


def skin_in_roi(landmarks: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    """Cheeks and forehead inside ``roi`` (bool): the face outline pulled in, eyes/brows/nose/mouth out."""
    x0, y0, x1, y1 = roi
    shape = (y1 - y0, x1 - x0)
    face = region_mask(landmarks, [Region.FACE], shape, (x0, y0), RegionSettings(0.0)).astype(np.uint8)
    inset = max(1, int(0.15 * interocular(landmarks)))
    # erosion by a disk of radius ``inset`` as a distance transform: O(pixels) where an elliptic kernel costs
    # O(pixels x inset) (0.2-0.4 s on a 12 MP face); the two differ in well under 0.1 % of the pixels
    return _deeper_than(face, inset + 0.5) & ~region_mask(
        landmarks, _FEATURES, shape, (x0, y0), RegionSettings(0.25)
    )


def _deeper_than(inside: np.ndarray, depth: float) -> np.ndarray:
    """``cv2.distanceTransform(inside, DIST_L2, DIST_MASK_PRECISE) > depth``, the transform made on the set
    pixels' bounding box grown by one pixel (the face outline fills ~70 % of its ROI, whose rest is the
    feather's pad: 16 → 12 ms on a 12 MP face). Every pixel beyond the box is 0, and the nearest 0 of a
    pixel inside is never beyond the box's own zero rim (or the image's edge where the box meets it), so
    the distances are the whole mask's up to OpenCV's float32 rounding, which follows the window's extent
    (~1e-5). A distance between pixel centres is the root of an integer n, never within 1/(8k) of the
    k + 0.5 it is compared with (n = k² + k lies 0.125/(k + 0.5) below it; k ≥ 1 here): the same mask,
    pixel for pixel (issue-11t10; the window of ``surrogate_shape._inside_distance``, issue-11t9)."""
    x, y, w, h = cv2.boundingRect(inside)
    rows, cols = slice(max(0, y - 1), y + h + 1), slice(max(0, x - 1), x + w + 1)
    deep = np.zeros(inside.shape, bool)
    deep[rows, cols] = cv2.distanceTransform(inside[rows, cols], cv2.DIST_L2, cv2.DIST_MASK_PRECISE) > depth
    return deep


def match_grain(
    blended: np.ndarray,
    original: np.ndarray,
    weight: np.ndarray,
    skin: np.ndarray,
    seed: int,
    source: SkinSource | None = None,
    to_crop: np.ndarray | None = None,
) -> np.ndarray:
    """``blended`` (H, W, 3 uint8, the pasted ROI) plus luminance detail, weighted by ``weight`` (H, W) in
    [0, 1], so that its finest band on ``skin`` carries as much energy as the original's. The detail is a
    donor's skin quilted at pixel scale when ``source`` is given (``to_crop`` (2, 3) maps ROI pixels to its
    crop), seeded noise otherwise. Deterministic in seed."""
    if not skin.any():
        return blended
    gray_in = cv2.cvtColor(original, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gray_out = cv2.cvtColor(blended, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if source is not None and to_crop is not None:
        layer = quilt(source, to_crop, gray_in.shape, seed) * weight
        want, have = float(_fine(gray_in)[skin].var()), float(_fine(gray_out)[skin].var())
        unit = float(_fine(layer)[skin].var())
        gain = np.sqrt(max(0.0, want - have) / max(unit, 1e-6))
        gain = min(gain, MAX_DETAIL / max(float(layer[skin].std()), 1e-6))
        if gain * np.sqrt(unit) < 0.25:
            return blended
        return _add_luminance(blended, gain * layer)
    want, have = _spread(_fine(gray_in)[skin]), _spread(_fine(gray_out)[skin])
    missing = min(MAX_GRAIN, float(np.sqrt(max(0.0, want**2 - have**2))))
    if missing < 0.25:
        return blended
    noise = _fine(np.random.default_rng(seed).standard_normal(gray_in.shape).astype(np.float32))
    grain = noise * (missing / max(float(noise.std()), 1e-6)) * weight
    return _add_luminance(blended, grain)


def _add_luminance(image: np.ndarray, layer: np.ndarray) -> np.ndarray:
    """round(image + layer) on every channel as uint8, in place on one float copy (the same float32 sums as
    ``np.clip(image + layer[..., None] + 0.5, 0, 255)``, bit for bit, without its 12 MP temporaries)."""
    out = image.astype(np.result_type(np.float32, layer.dtype))  # float64 where the gain made it so
    out += layer[..., None]
    out += 0.5
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)
