"""Donor choice for the surrogate engine: the patient's profile (skin tone, sex and age from the header or
estimated from the face) and the seeded choice of k donors far from the patient in identity but close in
tone, sex and age, relaxed tier by tier."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from anonymizer.donors import DonorBank, DonorBankError, DonorPhoto, ita_degrees, skin_lab, skin_mask
from anonymizer.engines.base import AlignedFace
from anonymizer.faces.verify import descriptor, distance


class ChoiceSettings(Protocol):
    k: int  # donors per synthetic identity (at most)
    k_min: int  # fewest donors: a tier with fewer passing identities is relaxed
    age_tolerance: float  # years, in the strictest tier


# donor-selection tiers, strictest first: (min identity distance, skin-tone tolerance in ITA°, same sex, age)
# dlib puts different people of one sex and ancestry at 0.55-0.75, so identity is a floor, not a goal: the
# average of k donors moves far from everyone. Tone relaxes before sex, sex before anything else.
TIERS: tuple[tuple[float, float, bool, bool], ...] = (
    (0.62, 8.0, True, True),
    (0.62, 12.0, True, False),
    (0.60, 18.0, True, False),
    (0.60, 28.0, True, False),
    (0.55, 45.0, True, False),
    (0.55, 360.0, True, False),
    (0.55, 360.0, False, False),
)


@dataclass(frozen=True)
class DonorChoice:
    identities: tuple[str, ...]
    tier: int
    seed: int = 0  # the keyed seed that drew the set (keys the synthetic identity's mix)


def _patient_profile(
    faces: Sequence[AlignedFace], bank: DonorBank, read_sex: Callable[[np.ndarray], str] | None = None
) -> dict[str, Any]:
    """``read_sex``: the engine's sex reading of a descriptor (None: the donors' sex centroids)."""
    descs = [f.descriptor if f.descriptor is not None else descriptor(f.image, f.landmarks) for f in faces]
    lab = np.mean([skin_lab(f.image, skin_mask(f.landmarks, f.image.shape[0])) for f in faces], axis=0)
    sex, age = _apparent_sex_age(np.mean(descs, axis=0), bank)
    if read_sex is not None:
        sex = read_sex(np.mean(descs, axis=0))
    # The header (PatientSex / PatientAge) outranks the estimate: dlib's descriptor is no age meter.
    told_sex = {f.sex for f in faces if f.sex in ("F", "M")}
    told_age = [f.age for f in faces if np.isfinite(f.age)]
    if len(told_sex) == 1:
        sex = told_sex.pop()
    if told_age:
        age = float(np.median(told_age))
    return {"descriptors": descs, "ita": ita_degrees(lab), "sex": sex, "age": age}


def _apparent_sex_age(desc: np.ndarray, bank: DonorBank, k: int = 7) -> tuple[str, float]:
    """Apparent sex from the donors' sex centroids in descriptor space (a linear split, no extra model);
    apparent age as the median of the k nearest donors' ages."""
    sex = apparent_sex(desc, bank)
    aged = [p for p in bank.photos if np.isfinite(p.age)]
    near = sorted(aged, key=lambda p: distance(p.descriptor, desc))[:k]
    return sex, (float(np.median([p.age for p in near])) if near else float("nan"))


def apparent_sex(desc: np.ndarray, bank: DonorBank, margin: float = 0.0) -> str:
    """"F" or "M" by the nearer of the donors' sex centroids in descriptor space ("" without both sexes;
    "?" within ``margin`` of the midpoint, in units of the centroids' distance)."""
    female = [p.descriptor for p in bank.photos if p.sex == "F"]
    male = [p.descriptor for p in bank.photos if p.sex == "M"]
    if not (female and male):
        return ""
    mf, mm = np.mean(female, axis=0), np.mean(male, axis=0)
    score = float(np.dot(desc - (mf + mm) / 2, mm - mf)) / float(np.dot(mm - mf, mm - mf))
    if margin > 0 and abs(score) < margin:
        return "?"
    return "M" if score > 0 else "F"


def choose_donors(
    bank: DonorBank, seed: int, patient: dict[str, Any], settings: ChoiceSettings
) -> DonorChoice:
    """Up to k identities of the seeded permutation passing the strictest tier that yields at least k_min
    (more donors: more directions for the keyed identity, and none of them dominant; a stricter tier keeps
    sex and tone, which a mixed set would blur)."""
    groups = bank.by_identity()
    ids = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(ids))
    stats = {i: _donor_stats(groups[i], patient) for i in ids}
    fewest = min(settings.k_min, settings.k)
    for tier_index, tier in enumerate(TIERS):
        chosen = [ids[j] for j in order if _passes(stats[ids[j]], patient, tier, settings)][: settings.k]
        if len(chosen) >= fewest:
            return DonorChoice(tuple(chosen), tier_index, seed)
    raise DonorBankError(f"donor bank too small: need {fewest} donors far from the patient")


def near_in_tone(
    bank: DonorBank, identities: Sequence[str], ita: float, tolerance: float
) -> list[bool] | None:
    """Whether each donor's mean skin tone lies within ``tolerance`` degrees ITA of ``ita`` (None when
    ``tolerance`` ≤ 0: no limit)."""
    if tolerance <= 0:
        return None
    groups = bank.by_identity()
    tones = [float(np.mean([ita_degrees(p.skin_lab) for p in groups[i]])) for i in identities]
    return [abs(tone - ita) <= tolerance for tone in tones]


def _donor_stats(photos: list[DonorPhoto], patient: dict[str, Any]) -> dict[str, Any]:
    dist = min(distance(p.descriptor, d) for p in photos for d in patient["descriptors"])
    ita = float(np.mean([ita_degrees(p.skin_lab) for p in photos]))
    ages = [p.age for p in photos if np.isfinite(p.age)]
    return {"dist": dist, "ita": ita, "sex": photos[0].sex, "age": ages[0] if ages else float("nan")}


def _passes(
    donor: dict[str, Any],
    patient: dict[str, Any],
    tier: tuple[float, float, bool, bool],
    settings: ChoiceSettings,
) -> bool:
    min_dist, tone_tol, same_sex, use_age = tier
    if donor["dist"] < min_dist or abs(donor["ita"] - patient["ita"]) > tone_tol:
        return False
    if same_sex and patient["sex"] and donor["sex"] and donor["sex"] != patient["sex"]:
        return False
    both_aged = np.isfinite(donor["age"]) and np.isfinite(patient["age"])
    return not (use_age and both_aged and abs(donor["age"] - patient["age"]) > settings.age_tolerance)


def _peers(bank: DonorBank, patient: dict[str, Any], tone: float = 20.0, minimum: int = 6) -> list[str]:
    """Identities of the patient's apparent demographic (tone, sex): the centre the caricature and the
    anti-face move from. Too few of the patient's tone: every identity of their sex (the textures share one
    skin tone already), and only then everyone. A centre of both sexes turned the anti-face of a woman into
    a man's face: the patient's deviation from it, flipped, is the sex difference (London set, fold 1: four
    women of the patient's tone, the eyes-kept outputs of 003 called male)."""
    groups = bank.by_identity()
    same_sex = [
        i
        for i, photos in groups.items()
        if not patient["sex"] or not photos[0].sex or photos[0].sex == patient["sex"]
    ]
    near = [
        i
        for i in same_sex
        if abs(np.mean([ita_degrees(p.skin_lab) for p in groups[i]]) - patient["ita"]) <= tone
    ]
    if len(near) >= minimum:
        return near
    return same_sex if len(same_sex) >= minimum else sorted(groups)
