"""Colour and light of the surrogate engine's synthetic face, from statistics of the patient's photo.

- Light: the patient's skin colour at the scale of the studio light (a skin-only normalised blur far wider
  than any facial feature) replaces the synthetic face's own. The face then sits under the original's light
  and keeps the patient's tone and warmth everywhere (a global mean/std match left dark skin greyer and
  lighter at the centre and let strong rungs' broad dark cheeks through), and the Poisson blend has no
  mismatch at its boundary to spread inwards. Only skin enters the blur (eyes, brows, nostrils and mouth are
  left out), so no feature of the patient's face is carried over.
- Features: the lips and the irises of the donor mix take the patient's mean colour there (a pink donor lip
  on a dark-skinned patient, a pale iris against brown eyes). Mean colours only, like the skin tone.
"""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.donors import skin_mask
from anonymizer.faces.regions import interocular

LIGHT_SIGMA = 0.45  # the light's scale, × inter-ocular distance (features are 0.05-0.3)
MIN_COVER = 0.05  # below this share of skin in the blur window the light is extrapolated from wider around


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)


def _rgb(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def skin_light(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
    """(S, S, 3) float32 Lab of the skin at the scale of the light: a normalised blur over skin pixels only,
    defined over the whole crop; None when no skin is visible."""
    size = image.shape[0]
    mask = skin_mask(landmarks, size).astype(np.float32)
    if not mask.any():
        return None
    sigma = LIGHT_SIGMA * interocular(landmarks)
    lab = _lab(image)
    weight = cv2.GaussianBlur(mask, (0, 0), sigma)
    light = cv2.GaussianBlur(lab * mask[..., None], (0, 0), sigma)
    # far from the skin (hair, background corners) fall back to a wider blur, then to the skin mean
    wide_w = cv2.GaussianBlur(mask, (0, 0), 3 * sigma)
    wide = cv2.GaussianBlur(lab * mask[..., None], (0, 0), 3 * sigma) / np.maximum(wide_w, 1e-6)[..., None]
    mean = lab[mask > 0].mean(0)
    wide = np.where((wide_w > 1e-4)[..., None], wide, mean)
    share = np.clip(weight / MIN_COVER, 0, 1)[..., None]
    return (share * light / np.maximum(weight, 1e-6)[..., None] + (1 - share) * wide).astype(np.float32)


def relight(synth: np.ndarray, synth_landmarks: np.ndarray, patient_light: np.ndarray | None) -> np.ndarray:
    """The synthetic crop with its skin-scale light replaced by the patient's (Lab, every channel)."""
    own = skin_light(synth, synth_landmarks)
    if own is None or patient_light is None:
        return synth
    return _rgb(_lab(synth) + (patient_light - own))


FEATURE_SHIFT = 30.0  # at most this many Lab levels per channel (a mislocated landmark stays harmless)
EYE_POINTS, LIP_OUTER, LIP_INNER = (slice(36, 42), slice(42, 48)), slice(48, 60), slice(60, 68)


def _polygon(points: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask > 0


def _feature_masks(lab: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
    """Boolean masks of the parts whose colour a donor mix gets wrong: the lips (outer minus inner lip line,
    so teeth stay), and per eye its dark part (iris, pupil) and its bright part (the white)."""
    size = lab.shape[0]
    lips = _polygon(landmarks[LIP_OUTER], size) & ~_polygon(landmarks[LIP_INNER], size)
    masks = [lips]
    for eye in EYE_POINTS:
        inside = _polygon(landmarks[eye], size)
        if inside.sum() < 8:
            masks += [inside, inside]
            continue
        middle = float(np.median(lab[..., 0][inside]))
        masks += [inside & (lab[..., 0] <= middle), inside & (lab[..., 0] > middle)]
    return masks


def feature_colours(image: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray | None]:
    """Mean Lab of the patient's lips, irises and eye whites (None where a part is not visible)."""
    lab = _lab(image)
    return [lab[m].mean(0) if m.sum() >= 8 else None for m in _feature_masks(lab, landmarks)]


def match_features(
    synth: np.ndarray, synth_landmarks: np.ndarray, patient: list[np.ndarray | None] | None
) -> np.ndarray:
    """The synthetic lips, irises and eye whites moved to the patient's mean colour there (soft-edged)."""
    if not patient:
        return synth
    lab = _lab(synth)
    soft = 0.03 * interocular(synth_landmarks)
    shift = np.zeros_like(lab)
    # the dark part of an eye takes the patient's hue only: its lightness is pupil, lashes and shadow, and
    # lifting it turns the eye glassy
    channels = [np.ones(3), *[np.array(c) for _ in EYE_POINTS for c in ((0, 1, 1), (1, 1, 1))]]
    for mask, want, use in zip(_feature_masks(lab, synth_landmarks), patient, channels, strict=True):
        if want is None or mask.sum() < 8:
            continue
        delta = use * np.clip(want - lab[mask].mean(0), -FEATURE_SHIFT, FEATURE_SHIFT)
        weight = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), soft)
        shift += weight[..., None] * delta
    return _rgb(lab + shift)
