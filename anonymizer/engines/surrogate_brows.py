"""Brow contrast of the synthetic face (settings.brow_contrast).

An average of several donors' brows, each a little off the others, is a faint grey smear; the colour match
to the patient's skin then fades it further. dlib's HOG detector keys on the dark horizontal bar of the
brows above the eyes: without it the face's top edge is the eye line, and the detector boxes a smaller face
(London-set 004 with the eyes kept: thick dark brows in the photo, faint grey ones in the output, a box one
pyramid level smaller). Here the synthetic brows' darkness below the surrounding skin is scaled to the
patient's own: only the pixels darker than that skin deepen, so the brows' shape, place and hair texture
stay the donors' and the skin around them is untouched.
"""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.faces.regions import interocular

BROWS = (slice(17, 22), slice(22, 27))
EYES = (slice(36, 42), slice(42, 48))  # each brow's eye (dlib's 68-point order)
BAND = 0.10  # brow band half-thickness, × inter-ocular distance
RING = 0.12  # skin ring around the band it is compared with
GAIN_LIMITS = (0.7, 3.0)  # the synthetic brows' contrast is scaled by at most this much either way


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)


def _band(landmarks: np.ndarray, brow: slice, size: int, half: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.polylines(mask, [np.round(landmarks[brow]).astype(np.int32)], False, 1, 2 * half + 1)
    return mask > 0


def _parts(lab: np.ndarray, landmarks: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Per brow: its band mask, the skin level around it (median Lab of a ring), its contrast (the skin's
    lightness minus the mean of the band's darker half) and the top of its eye (the row the lids and lashes
    start on, never changed); brows too small to measure are left out."""
    size, iod = lab.shape[0], interocular(landmarks)
    half, ring = max(1, round(BAND * iod)), max(1, round(RING * iod))
    parts = []
    for brow, eye in zip(BROWS, EYES, strict=True):
        top = float(landmarks[eye, 1].min())
        band = _band(landmarks, brow, size, half)
        band[max(0, int(top)) :] = False
        around = _band(landmarks, brow, size, half + ring) & ~band
        if band.sum() < 16 or around.sum() < 16:
            continue
        light = lab[..., 0][band]
        skin = np.median(lab[around], axis=0)
        dark = light[light <= np.median(light)].mean()
        parts.append((band, skin, np.array(skin[0] - dark, np.float32), top))
    return parts


def brow_contrast(image: np.ndarray, landmarks: np.ndarray) -> float | None:
    """How much darker than the skin around them the brows are (Lab lightness levels; None: not visible)."""
    parts = _parts(_lab(image), np.asarray(landmarks, np.float64))
    return float(np.mean([c for _, _, c, _ in parts])) if parts else None


def match_brows(synth: np.ndarray, landmarks: np.ndarray, patient: float | None) -> np.ndarray:
    """``synth`` (uint8 RGB crop) with each brow's darkness below its surrounding skin scaled to the
    patient's contrast ``patient`` (soft-edged band; the colour keeps its hue and fades with the lightness;
    the eyes below are never touched)."""
    if patient is None or patient <= 0:
        return synth
    lab = _lab(synth)
    landmarks = np.asarray(landmarks, np.float64)
    soft = 0.04 * interocular(landmarks)
    out = lab.copy()
    touched = np.zeros(lab.shape[:2], bool)
    for band, skin, own, top in _parts(lab, landmarks):
        if own <= 1.0:
            continue
        gain = float(np.clip(patient / own, *GAIN_LIMITS))
        x, y, w, h = cv2.boundingRect(band.astype(np.uint8))
        pad = int(4 * soft) + 2
        y0, y1, x0, x1 = max(0, y - pad), min(y + h + pad, max(0, int(top))), max(0, x - pad), x + w + pad
        if y1 <= y0:
            continue
        weight = cv2.GaussianBlur(band[y0:y1, x0:x1].astype(np.float32), (0, 0), soft)
        window = lab[y0:y1, x0:x1]
        below = np.minimum(window[..., 0] - skin[0], 0.0)  # only pixels darker than the skin
        darken = (gain - 1.0) * weight * below
        # the colour keeps its hue and fades with the lightness (dark hair is less saturated)
        fade = np.minimum(np.clip(window[..., 0] + darken, 0, 255) / np.maximum(window[..., 0], 1.0), 1.0)
        out[y0:y1, x0:x1, 0] += darken  # added, not assigned: the two brows' windows may overlap
        out[y0:y1, x0:x1, 1:] += (window[..., 1:] - 128.0) * (fade - 1.0)[..., None]
        touched[y0:y1, x0:x1] |= darken != 0
    rgb = cv2.cvtColor(np.clip(out + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return np.where(touched[..., None], rgb, synth)  # the rest skips the lossy Lab round trip
