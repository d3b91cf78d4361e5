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

from anonymizer.channels import per_channel, per_pixel
from anonymizer.donors import DonorPhoto, skin_mask
from anonymizer.faces.regions import interocular

LIGHT_SIGMA = 0.45  # the light's scale, × inter-ocular distance (features are 0.05-0.3)
HANG_FADE = 0.03  # × inter-ocular distance: a hanging strand fades out over this height above brow_ceiling
HANG_REACH = 0.04  # × inter-ocular distance: how far around a hanging strand ``hanging_matte`` looks
HANGING_LIFT = 0.1  # hanging_hair stops this × inter-ocular distance above the brows' landmarks
MIN_COVER = 0.05  # below this share of skin in the blur window the light is extrapolated from wider around


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)


def _rgb(lab: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


def _wide_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with a sigma of tens of pixels, done at reduced size (about 100x faster at 512 px; the
    light is smooth, so the result differs by well under a level)."""
    factor = max(1.0, sigma / 4.0)
    h, w = image.shape[:2]
    size = (max(1, int(w / factor)), max(1, int(h / factor)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def skin_light(
    image: np.ndarray,
    landmarks: np.ndarray,
    lab: np.ndarray | None = None,
    skin: np.ndarray | None = None,
    coloured: np.ndarray | None = None,
) -> np.ndarray | None:
    """(S, S, 3) float32 Lab of the skin at the scale of the light: a normalised blur over skin pixels only,
    defined over the whole crop; None when no skin is visible. ``lab``: ``_lab(image)``, ``skin``:
    ``skin_mask(landmarks, size)``, ``coloured``: ``_skin_coloured(lab, landmarks)`` when known (none is
    changed)."""
    size = image.shape[0]
    lab = _lab(image) if lab is None else lab
    skin = skin_mask(landmarks, size) if skin is None else skin
    coloured = _skin_coloured(lab, landmarks, skin=skin.copy()) if coloured is None else coloured
    mask = (skin & coloured).astype(np.float32)
    if not mask.any():
        return None
    sigma = LIGHT_SIGMA * interocular(landmarks)
    weight = _wide_blur(mask, sigma)
    masked = lab * per_channel(mask)  # (per_channel: the same values as a [..., None] weight, faster)
    light = _wide_blur(masked, sigma)
    # far from the skin (hair, background corners) fall back to a wider blur, then to the skin mean
    wide_w = _wide_blur(mask, 3 * sigma)
    wide = _wide_blur(masked, 3 * sigma) / per_channel(np.maximum(wide_w, 1e-6))
    far = ~(wide_w > 1e-4)  # nearly always empty: the skin mean is gathered only when needed
    if far.any():
        wide[far] = lab[mask > 0].mean(0)
    share = per_channel(np.clip(weight / MIN_COVER, 0, 1))
    return (share * light / per_channel(np.maximum(weight, 1e-6)) + (1 - share) * wide).astype(np.float32)


def _skin_coloured(
    lab: np.ndarray, landmarks: np.ndarray, limit: float = 3.0, skin: np.ndarray | None = None
) -> np.ndarray:
    """(S, S) bool: pixels within ``limit`` robust deviations of the colour of the upper cheeks (every Lab
    channel; the upper cheeks, between the eyes' and the nose tip's height, are skin on nearly every face,
    where a forehead may be under a fringe and a jaw under a beard). Hair, a beard, glasses fall outside.
    ``skin``: ``skin_mask(landmarks)`` when the caller has it already (it is changed here)."""
    skin = skin_mask(landmarks, lab.shape[0]) if skin is None else skin
    top, bottom = int(np.mean(landmarks[36:48, 1])), int(landmarks[33, 1])
    skin[:top], skin[bottom:] = False, False
    if skin.sum() < 16:
        return np.ones(lab.shape[:2], bool)
    values = lab[skin][::4]  # a quarter of the pixels gives the same robust statistics, 4x faster
    median = np.median(values, axis=0)
    spread = 1.4826 * np.median(np.abs(values - median), axis=0) + 1.0
    # |lab - median| <= limit × spread on every channel, as one range test (a third of the time)
    low, high = median - limit * spread, median + limit * spread
    return cv2.inRange(lab, np.asarray(low, np.float64), np.asarray(high, np.float64)) > 0


def relight(
    synth: np.ndarray,
    synth_landmarks: np.ndarray,
    patient_light: np.ndarray | None,
    skin: np.ndarray | None = None,
) -> np.ndarray:
    """The synthetic crop with its skin-scale light replaced by the patient's (Lab, every channel).
    ``skin``: ``skin_mask(synth_landmarks, size)`` when the caller has it."""
    lab = _lab(synth)  # skin_light only reads it
    own = skin_light(synth, synth_landmarks, lab, skin)
    if own is None or patient_light is None:
        return synth
    return _rgb(lab + (patient_light - own))


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


def feature_colours(
    image: np.ndarray, landmarks: np.ndarray, lab: np.ndarray | None = None
) -> list[np.ndarray | None]:
    """Mean Lab of the patient's lips, irises and eye whites (None where a part is not visible); ``lab``:
    ``_lab(image)`` when known (read only)."""
    lab = _lab(image) if lab is None else lab
    return [lab[m].mean(0) if m.sum() >= 8 else None for m in _feature_masks(lab, landmarks)]


def match_features(
    synth: np.ndarray,
    synth_landmarks: np.ndarray,
    patient: list[np.ndarray | None] | None,
    iris_darken: float = 0.0,
) -> np.ndarray:
    """The synthetic lips, irises and eye whites moved to the patient's mean colour there (soft-edged).
    ``iris_darken`` (0-1): the share of the way the dark part of an eye also moves to the patient's lightness
    when his is darker (never lighter)."""
    if not patient:
        return synth
    lab = _lab(synth)
    soft = 0.03 * interocular(synth_landmarks)
    shift = np.zeros_like(lab)
    # the dark part of an eye takes the patient's hue only: its lightness is pupil, lashes and shadow, and
    # lifting it turns the eye glassy
    channels = [np.ones(3), *[np.array(c) for _ in EYE_POINTS for c in ((0, 1, 1), (1, 1, 1))]]
    masks = _feature_masks(lab, synth_landmarks)
    for n, (mask, want, use) in enumerate(zip(masks, patient, channels, strict=True)):
        if want is None:
            continue
        y0, y1, x0, x1 = _blur_window(mask, soft)
        part = mask[y0:y1, x0:x1]  # every pixel of the mask, in the same order as in the whole crop
        if part.sum() < 8:
            continue
        gap = want - lab[y0:y1, x0:x1][part].mean(0)
        delta = use * np.clip(gap, -FEATURE_SHIFT, FEATURE_SHIFT)
        if n % 2 == 1:  # an eye's dark part (masks: lips, then dark / bright per eye): darkened only
            delta[0] = iris_darken * np.clip(gap[0], -FEATURE_SHIFT, 0.0)
            if delta[0] < 0:  # a lighter donor iris: its part in the bright half too
                shift += _iris_in_the_bright_half(lab, mask, masks[n + 1], delta)
        weight = cv2.GaussianBlur(part.astype(np.float32), (0, 0), soft)
        shift[y0:y1, x0:x1] += per_channel(weight) * per_pixel(delta, (*weight.shape, 3))
    return _rgb(lab + shift)


def _iris_in_the_bright_half(
    lab: np.ndarray, dark: np.ndarray, bright: np.ndarray, delta: np.ndarray
) -> np.ndarray:
    """The dark part's shift for the bright half's pixels, by how far each lies from the half's mean lightness
    towards the dark part's (0 at or above the white's mean, all of it at the dark part's): a light donor
    iris lies partly in the bright half, and there it kept its grey-blue (issue-11q9)."""
    light = lab[..., 0]
    white, iris = float(light[bright].mean()), float(light[dark].mean())
    weight = np.where(bright, np.clip((white - light) / max(white - iris, 1.0), 0.0, 1.0), 0.0)
    return per_channel(weight.astype(np.float32)) * per_pixel(delta, lab.shape)


def _blur_window(mask: np.ndarray, sigma: float) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the mask's bounding box grown by the Gaussian kernel's radius. Blurring only this
    window gives the full-image blur's values (to float rounding; outside it they are 0): a feature is a few
    percent of the crop, and the full-crop blurs were most of ``match_features``' time on every rung."""
    x, y, w, h = cv2.boundingRect(mask.astype(np.uint8))
    radius = (round(sigma * 8 + 1) | 1) // 2 + 1  # OpenCV's kernel size for a float image, + 1
    rows, cols = mask.shape[:2]
    return max(0, y - radius), min(rows, y + h + radius), max(0, x - radius), min(cols, x + w + radius)


def soften(texture: np.ndarray, average: np.ndarray, limit: float) -> np.ndarray:
    """``texture`` with its deviation from the plain donor ``average`` soft-limited to ``limit`` levels of
    lightness (colour scaled alike). Strong rungs stack caricature and anti-face terms; past a few tens of
    levels they read as blotches (dark cheeks, a grey brow) and glossy streaks (nose, cheekbones), not as
    another face."""
    if limit <= 0:
        return texture
    deviation = np.asarray(texture, np.float32) - average
    light = deviation @ np.array([0.299, 0.587, 0.114], np.float32)
    scale = limit * np.tanh(np.abs(light) / limit) / np.maximum(np.abs(light), 1e-3)
    return (average + deviation * per_channel(scale)).astype(np.float32)


KEPT_RING = 0.08  # × inter-ocular distance: the synthetic face eases into a kept region over this width


def kept_ring(kept: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(S, S, 1) float32: the patient's share in ``ease_into_kept`` (1 on the kept region, 0 beyond the ring);
    a per-face constant of the patient's crop."""
    width = max(1.0, KEPT_RING * interocular(landmarks))
    outside = cv2.distanceTransform((~kept).astype(np.uint8), cv2.DIST_L2, 5)
    return np.clip(1.0 - outside / width, 0.0, 1.0)[..., None]


def ease_into_kept(
    synth: np.ndarray,
    patient: np.ndarray,
    kept: np.ndarray,
    landmarks: np.ndarray,
    ring: np.ndarray | None = None,
) -> np.ndarray:
    """The synthetic crop faded into the patient's pixels over a narrow ring around the kept region (``kept``
    (S, S) bool, e.g. the nose). The Poisson blend takes the kept region's rim as fixed boundary values: where
    the synthetic face differs there (a nose side in shadow against a lit cheek), the solve spreads the
    difference over the cheeks as glossy highlights or dark patches. Faded first, the rim agrees and only
    the ring, about as wide as the paste's own seam, shows the patient's skin. ``ring``: ``kept_ring(kept,
    landmarks)`` when the caller has it already."""
    if not kept.any():
        return synth
    weight = per_channel((kept_ring(kept, landmarks) if ring is None else ring)[..., 0])
    mixed = weight * patient.astype(np.float32) + (1.0 - weight) * synth.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def boundary_base(
    patient: np.ndarray,
    synth: np.ndarray,
    landmarks: np.ndarray,
    kept: np.ndarray,
    coloured: np.ndarray | None = None,
    hair: np.ndarray | None = None,
) -> np.ndarray:
    """The image whose values the Poisson blend takes at its boundary: the patient's crop, except where the
    patient's pixels are not skin (a fringe over the forehead, a beard along the jaw), which take the
    synthetic face's own values. Fixed to dark hair, the solve would spread it over the synthetic skin as a
    grey patch under a fringe or a dark halo along a bearded jaw; the hair itself stays the patient's.
    ``coloured``: the patient's ``skin_coloured`` mask when already known (the same for every rung);
    ``hair``: ``boundary_hair(...)`` when already known (likewise)."""
    hair = boundary_hair(patient, landmarks, kept, coloured) if hair is None else hair
    base = patient.copy()
    cv2.copyTo(synth, hair.view(np.uint8), base)  # base[hair] = synth[hair], as a masked copy
    return base


def boundary_hair(
    patient: np.ndarray, landmarks: np.ndarray, kept: np.ndarray, coloured: np.ndarray | None = None
) -> np.ndarray:
    """(S, S) bool: where ``boundary_base`` takes the synthetic face's values (the patient's crop is not skin
    there); a per-face constant of the patient's crop."""
    hair = ~(skin_coloured(patient, landmarks) if coloured is None else coloured) & ~kept
    return cv2.morphologyEx(hair.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0


def skin_coloured(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(S, S) bool: the crop's skin-coloured pixels (``_skin_coloured``); a per-face constant of the patient's
    crop that the engine computes once and hands to ``fringe`` and ``boundary_base`` on every rung."""
    return _skin_coloured(_lab(image), landmarks)


def fringe(patient: np.ndarray, landmarks: np.ndarray, coloured: np.ndarray | None = None) -> np.ndarray:
    """(S, S) bool: hair over the forehead (pixels above the brows that are not skin-coloured, as regions,
    not specks). It stays the patient's: a synthetic forehead pasted over a fringe shows as a bald strip."""
    size = patient.shape[0]
    iod = interocular(landmarks)
    top = fringe_line(landmarks)
    hair = np.zeros((size, size), np.uint8)
    coloured = skin_coloured(patient, landmarks) if coloured is None else coloured
    hair[:top] = ~coloured[:top]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.05 * iod) | 1,) * 2)
    return cv2.morphologyEx(hair, cv2.MORPH_OPEN, kernel) > 0


def hanging_matte(
    patient: np.ndarray, landmarks: np.ndarray, coloured: np.ndarray | None = None
) -> np.ndarray | None:
    """(S, S) float32 in [0, 1], or None where no hair hangs below the fringe line: the share of the
    patient's pixel laid over the blended crop where strands hang from the fringe (``hanging_hair``).
    A pixel's share is how dark it is between the skin's median lightness (0) and the strands' own (1), so
    the skin between strands stays synthetic and a strand's soft edge stays soft; it fades to 0 over
    ``HANG_FADE`` above ``brow_ceiling``. Cut at the fringe line, a strand showed a square notch of synthetic
    skin (067); kept as a hard mask with the skin between the tips, the patient's lighter skin stood over the
    synthetic forehead in stripes ending in a straight line (003; issue-11q8)."""
    coloured = skin_coloured(patient, landmarks) if coloured is None else coloured
    if not coloured.any():
        return None
    lightness = _lab(patient)[..., 0]
    skin = float(np.median(lightness[coloured]))
    # hair hangs darker than the skin; a forehead's highlight (read as not skin) never joins
    top = fringe_line(landmarks)
    hung = hanging_hair(coloured | (lightness >= skin), landmarks, top)
    if not hung.any():
        return None
    strands = float(np.percentile(lightness[hung > 0], 10))
    dark = np.clip((skin - lightness) / max(skin - strands, 1.0), 0.0, 1.0)
    iod = interocular(landmarks)
    # the fringe's tips just above the line too: cut there to the fringe mask, they stood as dark dots (003)
    tips = slice(max(0, int(top - HANG_REACH * iod)), top)
    hung[tips] |= (~coloured[tips] & (lightness[tips] < skin)).astype(np.uint8)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(2 * HANG_REACH * iod) | 1,) * 2)
    near = cv2.dilate(hung, disc).astype(np.float32)
    rows = np.arange(hung.shape[0], dtype=np.float32)[:, None]
    fade = np.clip((brow_ceiling(landmarks, hung.shape[0])[None, :] - rows) / (HANG_FADE * iod), 0.0, 1.0)
    return (dark * near * fade).astype(np.float32)


def lay_over(blended: np.ndarray, patient: np.ndarray, matte: np.ndarray | None) -> np.ndarray:
    """``blended`` with the patient's pixels laid over it by ``matte`` (``hanging_matte``)."""
    if matte is None:
        return blended
    weight = per_channel(matte)
    mixed = weight * patient.astype(np.float32) + (1.0 - weight) * blended.astype(np.float32)
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def fringe_line(landmarks: np.ndarray) -> int:
    """The row above which every non-skin pixel counts as the fringe: 0.15 × inter-ocular over the brows."""
    return int(max(0.0, float(np.min(landmarks[17:27, 1])) - 0.15 * interocular(landmarks)))


def hanging_hair(coloured: np.ndarray, landmarks: np.ndarray, top: int) -> np.ndarray:
    """(S, S) uint8 0/1: pixels outside ``coloured`` (skin, and what must never join) below ``top`` and
    above the brows that join the hair above ``top``
    (strands of a fringe hanging towards the brows, hair at the temples). Cut at ``top`` alone, a strand
    inside the blend domain was replaced by synthetic skin with a straight edge: a square notch in the
    fringe (issue-11q7, London-set 067). Nothing at or below ``brow_ceiling`` joins: the brows (with their
    tails, which reach past the landmarks) and the eyes are the patient's features and must be replaced."""
    size = coloured.shape[0]
    rows = np.arange(size, dtype=np.float32)[:, None]
    above = rows < brow_ceiling(landmarks, size)[None, :]
    candidate = (~coloured & above).astype(np.uint8)
    count, labels = cv2.connectedComponents(candidate, connectivity=8)
    if count <= 1 or top <= 0:
        return np.zeros((size, size), np.uint8)
    joined = np.zeros(count, bool)
    joined[np.unique(labels[:top])] = True
    joined[0] = False
    hung = joined[labels]
    hung[:top] = False  # above it the fringe holds every non-skin pixel already
    return hung.astype(np.uint8)


def brow_ceiling(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(S,) float32 per column: the row ``HANGING_LIFT`` × inter-ocular distance above the brows' landmarks,
    interpolated between them and level beyond their ends (over the temples), so that a brow's tail, which
    descends past its last landmark, stays below it."""
    brows = np.asarray(landmarks[17:27], np.float64)
    order = np.argsort(brows[:, 0])
    lift = HANGING_LIFT * interocular(landmarks)
    columns = np.arange(size, dtype=np.float64)
    return (np.interp(columns, brows[order, 0], brows[order, 1]) - lift).astype(np.float32)


def highlight_level(
    image: np.ndarray,
    landmarks: np.ndarray,
    light: np.ndarray | None,
    lab: np.ndarray | None = None,
    skin: np.ndarray | None = None,
) -> float:
    """How far the patient's brightest skin rises above its light (98th percentile of lightness minus the
    light field on skin-coloured skin): the ceiling of the synthetic face's highlights. ``lab``:
    ``_lab(image)``, ``skin``: its skin-coloured skin (``skin_mask`` & ``_skin_coloured``) when known (read
    only)."""
    if light is None:
        return float("inf")
    lab = _lab(image) if lab is None else lab
    if skin is None:
        skin = skin_mask(landmarks, image.shape[0])
        skin &= _skin_coloured(lab, landmarks)
    if skin.sum() < 16:
        return float("inf")
    return max(4.0, float(np.percentile((lab[..., 0] - light[..., 0])[skin], 98)))


def tame_highlights(
    synth: np.ndarray,
    synth_landmarks: np.ndarray,
    light: np.ndarray | None,
    level: float,
    chroma: float = 0.0,
) -> np.ndarray:
    """Highlights of the synthetic face (a donor mix's flash on nose, cheekbones, forehead, raised by the
    caricature) soft-limited to the patient's own ``level`` above the light: glossy patches the original's
    light would not make. Eye whites and teeth keep their brightness. ``chroma`` (0-1): the share of the
    skin's colour (the light's a*, b*) a highlight takes back, from half its level up; a flash is colourless,
    and darkened alone it stays a grey-white patch on the forehead."""
    if light is None or not np.isfinite(level):
        return synth
    lab = _lab(synth)
    rise = lab[..., 0] - light[..., 0]
    knee = 0.5 * level
    over = np.maximum(rise - level, 0.0)
    tamed = np.where(rise > level, level + knee * np.tanh(over / knee), rise)
    size = synth.shape[0]
    spared = np.zeros((size, size), np.uint8)
    for points in (synth_landmarks[36:42], synth_landmarks[42:48], synth_landmarks[60:68]):
        cv2.fillPoly(spared, [np.round(points).astype(np.int32)], 1)
    iod = interocular(synth_landmarks)
    spared = cv2.dilate(spared, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(0.1 * iod) | 1,) * 2))
    weight = 1.0 - cv2.GaussianBlur(spared.astype(np.float32), (0, 0), 0.03 * iod)
    lab[..., 0] += weight * (tamed - rise)
    if chroma > 0:
        share = chroma * weight * np.clip((rise - 0.5 * level) / level, 0.0, 1.0)
        lab[..., 1:] += share[..., None] * (light[..., 1:] - lab[..., 1:])
    return _rgb(lab)


def skin_cover(texture: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(S, S) float32 in [0, 1]: 0 where a donor's shape-free texture shows a fringe over the forehead, 1
    elsewhere (soft-edged)."""
    hair = fringe(texture, reference).astype(np.float32)
    return 1.0 - cv2.GaussianBlur(hair, (0, 0), 0.03 * interocular(reference))


def covered_average(textures: np.ndarray, weights: np.ndarray, covers: np.ndarray) -> np.ndarray:
    """The donors' mix (``textures`` (k, S, S, 3), mixing ``weights`` (k,)) where each pixel counts only the
    donors whose skin shows there (``covers`` (k, S, S)): averaging in a fringe left the synthetic forehead
    grey. Where no donor shows skin the plain mix stays."""
    plain = np.tensordot(weights, textures, axes=1)
    mass = np.tensordot(weights, covers, axes=1)
    mixed = np.tensordot(weights, textures * per_channel(covers), axes=1)
    covered = mixed / per_channel(np.maximum(mass, 1e-6))
    share = per_channel(np.clip(mass / 0.25, 0.0, 1.0))  # a quarter of the mix showing skin is enough
    return (share * covered + (1.0 - share) * plain).astype(np.float32)


def detail_donor(donors: list[list[DonorPhoto]], sex: str, age: float) -> int:
    """Index of the donor whose skin detail (pores, fine lines, stubble) the synthetic face gets: of the
    patient's sex where known (no stubble on a woman), then nearest in age (wrinkles in proportion to age);
    ties keep the seeded order."""

    def key(i: int) -> tuple[int, float, int]:
        photo = donors[i][0]
        other_sex = int(bool(sex) and bool(photo.sex) and photo.sex != sex)
        ages = [p.age for p in donors[i] if np.isfinite(p.age)]
        gap = abs(ages[0] - age) if ages and np.isfinite(age) else 0.0
        return other_sex, round(gap / 5.0), i  # within 5 years counts as the same age

    return min(range(len(donors)), key=key)


LID_REACH = 0.14  # × inter-ocular distance: the lids' ring around each eye (lid, crease, under-eye skin)


def _lid_masks(landmarks: np.ndarray, size: int) -> list[np.ndarray]:
    """Per eye, (S, S) bool: the skin ring around it (the eye itself and the brows left out)."""
    iod = interocular(landmarks)
    brows = np.zeros((size, size), np.uint8)
    for points in (landmarks[17:22], landmarks[22:27]):
        cv2.polylines(brows, [np.round(points).astype(np.int32)], False, 1, max(1, int(0.08 * iod)))
    masks = []
    for eye in EYE_POINTS:
        inside = _polygon(landmarks[eye], size).astype(np.uint8)
        outer = cv2.dilate(inside, _disc(2 * LID_REACH * iod))
        inner = cv2.dilate(inside, _disc(0.04 * iod))
        masks.append((outer > 0) & (inner == 0) & (brows == 0))
    return masks


def _disc(diameter: float) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (int(diameter) | 1,) * 2)


def lid_colours(image: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray | None]:
    """Mean Lab of the skin around each of the patient's eyes (None where too little shows)."""
    lab = _lab(image)
    return [lab[m].mean(0) if m.sum() >= 32 else None for m in _lid_masks(landmarks, image.shape[0])]


def match_lids(
    synth: np.ndarray, synth_landmarks: np.ndarray, patient: list[np.ndarray | None] | None
) -> np.ndarray:
    """The redness (a*) of the skin around each synthetic eye lowered to the patient's mean there where it is
    redder (never raised; lightness and b* stay). The donors' lids keep their own redness through the
    common tone and the colour match: pink lids of fair donors turned red-brown on a dark-skinned patient."""
    if not patient:
        return synth
    lab = _lab(synth)
    soft = 0.04 * interocular(synth_landmarks)
    shift, moved = np.zeros_like(lab), False
    for mask, want in zip(_lid_masks(synth_landmarks, synth.shape[0]), patient, strict=True):
        if want is None or mask.sum() < 32:
            continue
        # redness only, and only down: matching b* as well (or lifting a*) drew grey-blue shadow rings
        # round the eyes of London-set 008, whose lids are darker and so less colourful than the synthetic's
        delta = np.clip(want - lab[mask].mean(0), -FEATURE_SHIFT, 0.0) * np.array([0.0, 1.0, 0.0])
        if not delta.any():
            continue
        moved = True
        y0, y1, x0, x1 = _blur_window(mask, soft)
        # full strength on the ring itself, fading out beyond it (a plain blur left a quarter of the red)
        weight = np.minimum(2.0 * cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32), (0, 0), soft), 1.0)
        shift[y0:y1, x0:x1] += weight[..., None] * delta
    return _rgb(lab + shift) if moved else synth
