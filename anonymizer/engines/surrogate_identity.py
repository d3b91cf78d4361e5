"""Keyed synthetic identities for the surrogate engine, morphable-model style.

A convex mix of k donors sits near the centre of its demographic: every patient's mix resembles every other
patient's (two different patients' outputs were called one person in 9-18 % of pairs, real people 0.7 %).
Instead each patient gets a keyed random point of the donors' linear space, in shape-free aligned
coordinates (texture) and in landmark coordinates (shape):

    identity = m + typicality × Σ c_i (donor_i − m),   m = the donors' mean, c keyed, Σ c_i = 0, ‖c‖ = 1

With ‖c‖ = 1 the deviation from the centre is as large as one real person's (typicality 1); two patients'
c are nearly orthogonal, so their identities are about as far apart as two strangers; capping each |c_i|
keeps the face away from every single donor (no donor dominates it). The same key gives the same c, so
every photo of a patient gets the same identity.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import cv2
import numpy as np

MAX_SHARE = 0.45  # largest |c_i| of one donor (of ‖c‖ = 1): no synthetic face is mostly one donor


def identity_key(seed: int, identities: tuple[str, ...]) -> int:
    """The mix's key: the patient's identity seed and the donor set (a re-drawn set gets a fresh mix)."""
    text = f"surrogate-identity|{seed}|" + "|".join(identities)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def identity_coefficients(key: int, k: int, max_share: float = MAX_SHARE) -> np.ndarray:
    """(k,) keyed unit vector of donor coefficients summing to 0, each |c_i| ≤ ``max_share`` (when k allows
    it). Summing to 0 keeps what the donors share (their sex, age, ancestry) at the donors' mean: a random
    sum would add or remove it (half the outputs changed sex by the probe when mixing about a mixed-sex
    centre)."""
    rng = np.random.default_rng(key)
    c = rng.standard_normal(k)
    c -= c.mean()
    c /= np.linalg.norm(c)
    if max_share * np.sqrt(k) < 1.0:  # too few donors to cap (the cap would be unreachable)
        return c
    for _ in range(100):  # clip, re-centre and renormalise until no donor exceeds its share (about)
        big = np.abs(c) > max_share + 1e-3
        if not big.any():
            break
        c = np.where(big, np.sign(c) * max_share, c)
        c -= c.mean()
        c /= np.linalg.norm(c)
    return c


def mix(centre: np.ndarray, donors: np.ndarray, coefficients: np.ndarray, typicality: float) -> np.ndarray:
    """centre + typicality × Σ c_i (donors[i] − centre); ``donors`` is (k, ...) stacked like ``centre``."""
    centre = np.asarray(centre, np.float32)
    deviations = np.asarray(donors, np.float32) - centre[None]
    return (centre + typicality * np.tensordot(coefficients.astype(np.float32), deviations, axes=1)).astype(
        np.float32
    )


def mix_texture(
    base: np.ndarray,
    neutral: np.ndarray,
    coefficients: np.ndarray,
    typicality: float,
    soft_clip: float = 0.0,
) -> np.ndarray:
    """``base`` (S, S, 3 float RGB: the donors' plain mean in the face's expression) plus the keyed mix of
    the donors' (k, S, S, 3) NEUTRAL textures' deviations, in lightness only. Neutral, so that the identity
    change is the same in every photo of the patient and a donor's smile is never subtracted (a negative
    weight on a smiling donor folded the synthetic smile). Colour (a*, b*) stays the base's: negative
    weights on colour invert it (green lips, grey-blue skin patches); lightness carries the shading of brows,
    lids and cheeks that identity lives in. ``soft_clip`` (L* units, 0 = off) bounds the change: one donor's
    beard shadow or stray hair would otherwise print as a dark or pale blotch."""
    light = np.stack([neutral_lightness(t) for t in neutral])
    return mix_lightness(base, light, coefficients, typicality, soft_clip)


def neutral_lightness(texture: np.ndarray) -> np.ndarray:
    """(S, S) float32 L* of a donor's (S, S, 3) float RGB texture, as ``mix_texture`` mixes it."""
    return np.ascontiguousarray(_lab(texture)[..., 0])


def mix_lightness(
    base: np.ndarray,
    light: np.ndarray,
    coefficients: np.ndarray,
    typicality: float,
    soft_clip: float = 0.0,
) -> np.ndarray:
    """``mix_texture`` with the neutral textures' (k, S, S) ``neutral_lightness`` already known (the engine
    keeps them per donor photo: the same in every donor set that holds the donor)."""
    deviation = mix(np.zeros_like(light[0]), light - light.mean(0)[None], coefficients, typicality)
    if soft_clip > 0:
        deviation = soft_clip * np.tanh(deviation / soft_clip)
    out = _lab(base)
    out[..., 0] = np.clip(out[..., 0] + deviation, 0.0, 100.0)
    return (cv2.cvtColor(out, cv2.COLOR_LAB2RGB) * 255.0).astype(np.float32)


def mix_shape(
    base: np.ndarray, neutral: np.ndarray, coefficients: np.ndarray, typicality: float
) -> np.ndarray:
    """``base`` (68, 2) landmarks in the face's expression plus the keyed mix of the donors' (k, 68, 2)
    neutral landmarks' deviations (see ``mix_texture``)."""
    neutral = np.asarray(neutral, np.float32)
    return (
        np.asarray(base, np.float32)
        + mix(np.zeros_like(neutral[0]), neutral - neutral.mean(0)[None], coefficients, typicality)
    ).astype(np.float32)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


# --- anchored re-draws --------------------------------------------------------------------------------
# With a region kept (nose, eyes, mouth) or for a patient close to many donors, a mix about the donors' centre
# stays nearer to the patient than to any real face: the kept region, skin tone and face frame are the
# patient's, and the synthetic rest is a typical face of their demographic, which the patient resembles more
# than any single stranger does. On the London Set such faces failed every rung of every donor set (distance
# 0.53-0.65 to the patient, no bank face nearer). A re-drawn set that leans on ONE donor far from the
# patient (a real person the output then resembles more than the patient) passed: 008 nose kept, 0.64 ->
# 0.72-0.76 with three reference faces nearer; 017 nose kept 0.54 -> 0.65-0.72 (donor share 0.7).
ANCHOR_FAR = 0.8  # donors at least this far from the patient (dlib) are anchors, in the set's keyed order
# the anchor's weight on the first re-draw, the second, then on later ones (0.8: 013, mouth kept, whose 0.7
# sets passed only with her two photos 0.61 apart, got two consistent outputs, 0.65-0.67 from her)
ANCHOR_SHARES = (0.6, 0.7, 0.8)


def anchor_weights(
    distances: Sequence[float], attempt: int, allowed: Sequence[bool] | None = None
) -> np.ndarray | None:
    """Mixing weights of a re-drawn donor set (``attempt`` ≥ 1; 0 or no donors: None, the plain mean).
    ``distances`` are each donor's dlib distance to the patient, in the set's keyed order. The anchor is the
    ``attempt``-th donor at least ``ANCHOR_FAR`` from the patient (keyed, so patients who share donors lean on
    different ones), else the farthest donors in turn; the others share the rest evenly. ``allowed``: the
    donors that may be the anchor (None, or none allowed: every donor)."""
    k = len(distances)
    if attempt < 1 or k < 2:
        return None
    candidates = [i for i in range(k) if allowed is None or allowed[i]] or list(range(k))
    far = [i for i in candidates if distances[i] >= ANCHOR_FAR]
    order = far or sorted(candidates, key=lambda i: -distances[i])
    anchor = order[(attempt - 1) % len(order)]
    share = ANCHOR_SHARES[min(attempt, len(ANCHOR_SHARES)) - 1]
    weights = np.full(k, (1.0 - share) / (k - 1))
    weights[anchor] = share
    return weights
