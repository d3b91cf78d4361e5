"""Keyed spread of synthetic identities: one patient, one keyed deviation in the donor bank's face space.

A small bank gives the patients of one sex and skin tone nearly the same donors (a London-set fold holds 8-12
identities per sex), and every mix of the same donors stays inside their span: two patients' outputs were
called one person in 3-12 % of pairs (real faces 0.7 %), and many outputs resembled the same donor. Each
patient therefore gets a keyed point of the bank's whole face space, added to the donors' mix:

    shape   += scale × Σ z_j σ_j v_j    (v_j, σ_j: principal directions of the bank's neutral landmarks)
    texture += scale × Σ z_j σ_j t_j    (t_j: the same for the neutral textures' lightness, structure band)

with z keyed by the patient's identity seed (the same z for every photo and donor set of the patient: one
patient stays one person) and ‖z‖ = √m, so every patient moves as far as one real person differs from the
mean (scale 1), in a direction that is nearly orthogonal to every other patient's. The principal directions
come from deviations about each identity's own sex mean: they hold no male-female difference, so the spread
cannot change the patient's sex.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from anonymizer.donors import DonorPhoto
from anonymizer.faces import align

MODES = 12  # principal directions kept (a fold of the London set has ~20 identities)
AWAY_MIN = 0.5  # σ: a patient coordinate this far off the mean decides the step's sign along it
CLIP = 14.0  # soft limit of the texture's lightness deviation, 8-bit levels (strong deviations blotch)


@dataclass(frozen=True)
class FaceSpace:
    """Principal directions of the bank's identities (neutral photos), each scaled by its std deviation."""

    shape: np.ndarray  # (m, 68, 2) landmark directions × σ, in the bank's crop coordinates
    texture: np.ndarray  # (m, S, S) lightness directions × σ, structure band, 8-bit units
    # per sex ("F", "M", "" = everyone): the mean aligned landmarks and structure-band lightness
    centres: dict[str, tuple[np.ndarray, np.ndarray]]
    blur: float
    # unit directions (shape (68, 2), texture (S, S)) of a ridge sex probe on the bank's identities: the
    # within-sex directions above hold no difference of MEANS, but a step along them can still cross a
    # discriminant boundary (a texture spread of 5 turned two London-set women into men by a descriptor
    # probe); ``deviation(guard=True)`` removes the step's component along these (None: one sex only)
    sex_directions: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def fit(
        cls,
        identities: Sequence[Sequence[DonorPhoto]],
        reference: np.ndarray,
        lightness: Callable[[DonorPhoto], np.ndarray],
        weight: np.ndarray,
        blur: float,
        modes: int = MODES,
    ) -> FaceSpace:
        """``identities``: each identity's photos; ``lightness``: a photo's shape-free lightness (S, S) in
        the bank's common skin tone; ``weight`` (S, S): where the face is; ``blur``: the structure band's
        upper scale (the band between blur / 5 and blur holds brows, lids and cheek shading, not skin
        grain or broad light)."""
        neutral = [min(photos, key=lambda p: float(np.abs(p.expression).sum())) for photos in identities]
        sexes = [photos[0].sex for photos in identities]
        shapes = np.stack([_aligned(p.landmarks, reference).ravel() for p in neutral])
        textures = np.stack([_band(lightness(p), blur).ravel() for p in neutral])
        size = weight.shape[0]
        shape = _principal(_within_sex(shapes, sexes), modes).reshape(-1, 68, 2)
        texture = _principal(_within_sex(textures, sexes), modes).reshape(-1, size, size) * weight[None]
        centres = {"": (shapes.mean(0), textures.mean(0))}
        for sex in ("F", "M"):
            chosen = np.array(sexes) == sex
            if chosen.any():
                centres[sex] = (shapes[chosen].mean(0), textures[chosen].mean(0))
        centres = {k: (a.reshape(68, 2), b.reshape(size, size)) for k, (a, b) in centres.items()}
        directions = None
        shape_axis, texture_axis = sex_direction(shapes, sexes), sex_direction(textures, sexes)
        if shape_axis is not None and texture_axis is not None:
            directions = (shape_axis.reshape(68, 2), texture_axis.reshape(size, size))
        return cls(shape.astype(np.float32), texture.astype(np.float32), centres, blur, directions)

    def coordinates(
        self, landmarks: np.ndarray, lightness: np.ndarray | None, reference: np.ndarray, sex: str
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """A face's coordinates (shape, texture) along the space's directions about its sex's mean, in units
        of each direction's σ (the patient's place in the space, which the spread then points away from).
        ``lightness`` None: the shape's alone (texture None); the texture's band is two full-size blurs,
        ~30 ms, and only a texture step pointed away from the patient reads it (issue-11t13)."""
        shape_centre, texture_centre = self.centres.get(sex, self.centres[""])
        shape = _along(self.shape, _aligned(landmarks, reference) - shape_centre)
        if lightness is None:
            return shape, None
        return shape, _along(self.texture, _band(lightness, self.blur) - texture_centre)

    def deviation(
        self,
        key: int,
        scale: float,
        away: tuple[np.ndarray, np.ndarray | None] | None = None,
        guard: bool = False,
        away_min: float = AWAY_MIN,
        clip: float = CLIP,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(shape (68, 2), texture lightness (S, S)): this key's point of the space, ``scale`` × one
        person's spread; the texture soft-clipped to ``CLIP`` levels. ``away``: the patient's coordinates
        (``coordinates``; a texture of None leaves the texture's step keyed alone); along every direction
        where the patient lies clearly off the mean the keyed step takes the opposite sign, so the spread
        moves away from the patient as well as from the other patients (a random step alone leaves the
        patient's rank among real faces as it was). ``guard``: the step has no component along the sex
        probes' directions (it cannot move a face across them). ``away_min``: how far off the mean (σ) a
        coordinate must lie to decide the sign along it; ``clip``: the texture's soft limit in 8-bit
        levels."""
        z = keyed_direction(key, len(self.shape))
        z_shape = z if away is None else _away(z, away[0], away_min)
        z_texture = z if away is None or away[1] is None else _away(z, away[1], away_min)
        shape = scale * np.tensordot(z_shape, self.shape, axes=1)
        texture = clip * np.tanh(scale * np.tensordot(z_texture, self.texture, axes=1) / clip)
        if guard and self.sex_directions is not None:  # after the clip, which would bend it back
            shape = _without(shape, self.sex_directions[0])
            texture = _without(texture, self.sex_directions[1])
        return shape.astype(np.float32), texture.astype(np.float32)


def spread_key(identity_seed: int, variant: int = 0) -> int:
    """The spread's key: the patient's identity seed alone (not the donor set), so re-drawn donor sets keep
    the same direction and a patient's photos, now or later, stay one person. ``variant`` > 0: the
    patient's further keyed steps (settings.spread_shape_variants), tried in this order."""
    tail = f"|{variant}" if variant else ""
    digest = hashlib.sha256(f"surrogate-spread|{identity_seed}{tail}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def keyed_direction(key: int, m: int) -> np.ndarray:
    """(m,) keyed Gaussian direction of norm √m (every patient moves as far; directions nearly orthogonal)."""
    z = np.random.default_rng(key).standard_normal(m)
    return (z / (np.linalg.norm(z) + 1e-12) * np.sqrt(m)).astype(np.float32)


def _away(z: np.ndarray, coordinates: np.ndarray, away_min: float = AWAY_MIN) -> np.ndarray:
    """The keyed step with the sign opposite to the patient's coordinate where |coordinate| > away_min."""
    clear = np.abs(coordinates) > away_min
    return np.where(clear, -np.sign(coordinates) * np.abs(z), z).astype(np.float32)


def _along(basis: np.ndarray, deviation: np.ndarray) -> np.ndarray:
    """Coordinates of ``deviation`` along each row of ``basis`` (rows = direction × σ), in σ units."""
    rows = basis.reshape(len(basis), -1).astype(np.float64)
    return (rows @ deviation.ravel()) / np.maximum((rows**2).sum(1), 1e-12)


def _aligned(landmarks: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return align.apply(align.similarity(landmarks, reference), landmarks).astype(np.float64)


def _band(light: np.ndarray, blur: float) -> np.ndarray:
    light = np.asarray(light, np.float32)
    return (cv2.GaussianBlur(light, (0, 0), blur / 5) - cv2.GaussianBlur(light, (0, 0), blur)).astype(
        np.float64
    )


def _within_sex(rows: np.ndarray, sexes: Sequence[str]) -> np.ndarray:
    """Each row's deviation from the mean of its own sex (identities of unknown sex: the overall mean), with
    any component along the male-female difference of means removed as well (no direction of the space
    can then move a face towards the other sex)."""
    out = rows - rows.mean(0)[None]
    labels = np.array(sexes)
    means = {}
    for sex in ("F", "M"):
        chosen = labels == sex
        if chosen.sum() >= 2:
            means[sex] = rows[chosen].mean(0)
            out[chosen] = rows[chosen] - means[sex][None]
    if len(means) == 2:
        axis = sex_axis(means["M"] - means["F"])
        out = out - np.outer(out @ axis, axis)
    return out


def sex_axis(difference: np.ndarray) -> np.ndarray:
    """Unit vector along the male-female difference of means (zero when there is none)."""
    norm = float(np.linalg.norm(difference))
    return difference / norm if norm > 0 else difference


def sex_direction(rows: np.ndarray, sexes: Sequence[str], lam: float = 0.1) -> np.ndarray | None:
    """Unit weight vector (D,) of a ridge probe of sex (+1 M, -1 F) on ``rows`` (n, D), solved in the span
    of the samples (D may be a whole texture); ``lam`` × the mean squared norm regularises. None without
    two of each sex."""
    labels = np.array(sexes)
    known = np.isin(labels, ("F", "M"))
    if (labels == "F").sum() < 2 or (labels == "M").sum() < 2:
        return None
    x = rows[known] - rows[known].mean(0)[None]
    y = np.where(labels[known] == "M", 1.0, -1.0)
    gram = x @ x.T
    ridge = lam * float(np.trace(gram)) / len(x)
    w = x.T @ np.linalg.solve(gram + ridge * np.eye(len(x)), y - y.mean())
    norm = float(np.linalg.norm(w))
    return w / norm if norm > 0 else None


def _without(step: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """``step`` less its component along the unit ``axis`` (same shape)."""
    flat = step.astype(np.float64).ravel()
    unit = axis.astype(np.float64).ravel()
    return (flat - (flat @ unit) * unit).reshape(step.shape).astype(np.float32)


def _principal(deviations: np.ndarray, modes: int) -> np.ndarray:
    """(m, D) principal directions of ``deviations`` (n, D), each scaled by its standard deviation."""
    n = len(deviations)
    if n < 2:
        return np.zeros((0, deviations.shape[1]))
    _, singular, vt = np.linalg.svd(deviations, full_matrices=False)
    m = min(modes, n - 1)
    return vt[:m] * (singular[:m] / np.sqrt(n - 1))[:, None]


class KeyedSteps:
    """The patient's further keyed shape steps (settings.spread_shape_variants), made on first use and then
    kept: only a rung whose outputs read as the other sex tries them (surrogate_ladder ``_other_step``), and
    making four steps up front cost ~0.08 s CPU on every group. ``possible``: whether the settings ask for
    any (its truth value; the steps themselves may still be fewer, even none). The same steps, in the same
    order and the same arrays on every pass, as the tuple made up front."""

    def __init__(self, make: Callable[[], tuple[np.ndarray, ...]], possible: bool) -> None:
        self._make, self._possible = make, possible
        self._steps: tuple[np.ndarray, ...] | None = None

    def __bool__(self) -> bool:
        return self._possible

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._steps is None:
            self._steps = self._make()
        return iter(self._steps)

    def scaled(self, factor: float) -> KeyedSteps:
        """These steps × ``factor`` (a set leaning on one far donor), made on first use as well."""
        return KeyedSteps(lambda: tuple(factor * step for step in self), self._possible)


NO_STEPS = KeyedSteps(tuple, False)  # no further steps (spread_shape_variants off)
