"""Texture and colour steps of the surrogate's synthesis: the anti-face term, caricature above the pore scale,
one donor's fine detail, and the Lab colour match to the patient's skin (pure functions on arrays)."""

from __future__ import annotations

import cv2
import numpy as np

from anonymizer.channels import channel_stats, per_pixel
from anonymizer.donors import DonorPhoto, skin_mask
from anonymizer.engines.surrogate_colour import _wide_blur

ANTI_CLIP = 18.0  # soft limit of the anti-face term, in 8-bit lightness levels


def _anti_face(
    centre: np.ndarray,
    patient: np.ndarray,
    weight: np.ndarray,
    blur: float,
    despeckled: np.ndarray | None = None,
    reduced: bool = False,
) -> np.ndarray:
    """The patient's deviation from the demographic mean, flipped, in lightness only and with each texture's
    lightness standardised over the face first, so skin tone and contrast do not count as identity (a dark
    patient against lighter donors would otherwise get a bleached face). ``despeckled``: ``patient``'s
    ``_despeckled(patient, blur)`` when the caller has it already (a repelled donor's, on every rung).
    ``reduced``: the band's wide blur made at reduced size (``_wide_blur``; settings.repel_reduced_blur):
    a full-size kernel of ~8 ``blur`` is ~17 of the ~21 ms of a call, and the wide band is smooth."""
    inside = weight[..., 0] > 0.5
    light_c = _lightness(centre)
    light_p = _despeckled(patient, blur) if despeckled is None else despeckled
    face_c, face_p = light_c[inside], light_p[inside]  # gathered once for the mean and the std
    mu_c, sd_c = face_c.mean(), face_c.std() + 1e-3
    mu_p, sd_p = face_p.mean(), face_p.std() + 1e-3
    deviation = sd_p * ((light_c - mu_c) / sd_c - (light_p - mu_p) / sd_p)  # in RGB units of lightness
    # Only the band of facial structure (lids, brow and cheek shading): inverted skin grain and stubble turn
    # into blotches, and a broad lightness bump survives the gradient-domain blend as a bleached face.
    wide = _wide_blur(deviation, blur) if reduced else cv2.GaussianBlur(deviation, (0, 0), blur)
    deviation = cv2.GaussianBlur(deviation, (0, 0), blur / 5) - wide
    # Soft-clipped: the strongest deviations (dark brows, lashes) would otherwise invert into pale streaks.
    deviation = ANTI_CLIP * np.tanh(deviation / ANTI_CLIP)
    return (deviation[..., None] * weight).astype(np.float32)


def held(term: np.ndarray, cap: float) -> np.ndarray:
    """``term`` (lightness levels) soft-limited to ``cap``: ``cap`` · tanh(term / cap), about ``term`` itself
    well below the cap (settings.anti_cap)."""
    return (cap * np.tanh(np.asarray(term, np.float32) / cap)).astype(np.float32)


def _despeckled(texture: np.ndarray, blur: float) -> np.ndarray:
    """The texture's lightness with small spots removed, as ``_anti_face`` compares it (``blur`` as there)."""
    return _despeckle(_lightness(texture), 0.6 * blur)


def _despeckle(light: np.ndarray, size: float) -> np.ndarray:
    """Median over ``size`` pixels: small spots (moles, scars, blemishes) vanish, larger structure (brows, lid
    and cheek shading) stays. The anti-face would otherwise stamp a pale negative of a mole at its place."""
    ksize = max(3, int(size) | 1)
    return cv2.medianBlur(np.clip(light + 0.5, 0, 255).astype(np.uint8), ksize).astype(np.float32)


def _lightness(texture: np.ndarray) -> np.ndarray:
    return np.asarray(texture, np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


def _closest(photos: list[DonorPhoto], expression_: np.ndarray) -> DonorPhoto:
    return min(photos, key=lambda p: float(np.abs(p.expression - expression_).sum()))



def _coarse_deviation(average: np.ndarray, population: np.ndarray, sigma: float) -> np.ndarray:
    """The average's deviation from the population mean above the pore scale (one blur per donor set, not
    per rung)."""
    return cv2.GaussianBlur(np.asarray(average, np.float32) - population, (0, 0), sigma)


def outward(average: np.ndarray, population: np.ndarray, gain: float, sigma: float) -> np.ndarray:
    """``average`` with its deviation from the population mean above the pore scale × ``gain`` (1: the
    average itself): a mix of k donors sits about 1/√k as far from its demographic's centre as one real
    face does (settings.outward_texture). The pore band stays the donors' (amplified grain turns blotchy)."""
    if gain == 1.0:
        return average
    return _caricature_texture(average, _coarse_deviation(average, population, sigma), gain)


def _caricature_texture(average: np.ndarray, coarse: np.ndarray, gain: float) -> np.ndarray:
    """Texture caricature that exaggerates only above the pore scale: amplified skin grain turns blotchy."""
    return (average + (gain - 1.0) * coarse).astype(np.float32)


def _sharpen(texture: np.ndarray, amount: float) -> np.ndarray:
    if amount > 0:
        texture = texture + amount * (texture - cv2.GaussianBlur(texture, (0, 0), 2.0))
    return np.asarray(texture, np.float32)


def _with_detail(texture: np.ndarray, detail: np.ndarray, gain: float, sigma: float) -> np.ndarray:
    """The mix's coarse bands plus one donor's fine band: the mix keeps its shape and shading, the skin
    gets real pores and fine lines instead of the wax that averaging leaves."""
    if gain > 0:
        texture = cv2.GaussianBlur(texture, (0, 0), sigma) + gain * detail
    return np.clip(texture, 0, 255).astype(np.uint8)


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)


def _skin_stats(
    image: np.ndarray, landmarks: np.ndarray, lab: np.ndarray | None = None, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean and std (per Lab channel) of a crop's skin; None when no skin is visible. ``lab``:
    ``_lab(image)``, ``mask``: ``skin_mask(landmarks, size)`` when known (read only)."""
    mask = skin_mask(landmarks, image.shape[0]) if mask is None else mask
    if not mask.any():
        return None
    lab = _lab(image) if lab is None else lab
    mean, std = channel_stats(lab[mask])  # mean(0), std(0) bit for bit, one gather (issue-11t9)
    return mean, std + 1e-3


def _match_colour(
    synth: np.ndarray,
    synth_lm: np.ndarray,
    patient_skin: tuple[np.ndarray, np.ndarray] | None,
    max_ratio: float,
    skin: np.ndarray | None = None,
) -> np.ndarray:
    """Move the synthetic face's skin mean/std (per Lab channel) onto the patient's skin statistics.
    ``skin``: ``skin_mask(synth_lm, size)`` when the caller has it (read only)."""
    size = synth.shape[0]
    src = _lab(synth)
    sm = skin_mask(synth_lm, size) if skin is None else skin
    if not sm.any() or patient_skin is None:
        return synth
    mu_s, sd_s = channel_stats(src[sm])  # skin.mean(0), skin.std(0), bit for bit
    sd_s = sd_s + 1e-3
    mu_p, sd_p = patient_skin
    ratio = np.clip(sd_p / sd_s, 1.0 / max_ratio, max_ratio)
    # per_pixel: the same per-channel operands as broadcasting the (3,) vectors, in row-long loops
    out = (src - per_pixel(mu_s, src.shape)) * per_pixel(ratio, src.shape) + per_pixel(mu_p, src.shape)
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
