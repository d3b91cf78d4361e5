"""Colour and light of the synthetic face (engines/surrogate_colour.py): the patient's skin light and tone
arrive, the patient's features do not."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anonymizer.donors import load_bank, skin_mask
from anonymizer.engines.surrogate_colour import (
    FEATURE_SHIFT,
    _feature_masks,
    boundary_base,
    detail_donor,
    ease_into_kept,
    feature_colours,
    fringe,
    fringe_line,
    hanging_matte,
    highlight_level,
    lay_over,
    match_features,
    relight,
    skin_light,
    soften,
    tame_highlights,
)
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces


def _patient_crop(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lm = detect_faces(image)[0].landmarks
    al = align.canonical_alignment(lm, 512)
    return align.crop(image, al), align.apply(al.matrix, lm)


def test_relight_gives_the_synthetic_skin_the_patients_light(bank_path: Path, pair: list[np.ndarray]) -> None:
    crop, lm = _patient_crop(pair[0])
    bank = load_bank(bank_path)
    donor = bank.photos[0]
    # a darker, bluer patient than any donor: what a global match left greyer and lighter
    patient = np.clip(crop.astype(np.float32) * (0.55, 0.5, 0.45), 0, 255).astype(np.uint8)
    target = skin_light(patient, lm)
    assert target is not None
    out = relight(donor.texture, bank.reference, target)
    skin = skin_mask(bank.reference, 512)
    got = skin_light(out, bank.reference)
    assert got is not None
    before = skin_light(donor.texture, bank.reference)
    assert before is not None
    assert np.abs(before - target)[skin].mean() > 15
    assert np.abs(got - target)[skin].mean(0).max() < 3.0  # every Lab channel within 3 levels on the skin

    # the donor's own detail stays: relighting moves the broad light only
    def fine(x: np.ndarray) -> np.ndarray:
        g = cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return g - cv2.GaussianBlur(g, (0, 0), 3.0)

    assert np.corrcoef(fine(out)[skin], fine(donor.texture)[skin])[0, 1] > 0.8


def test_skin_light_ignores_the_patients_features(pair: list[np.ndarray]) -> None:
    crop, lm = _patient_crop(pair[0])
    light = skin_light(crop, lm)
    painted = crop.copy()
    for points in (lm[36:42], lm[42:48], lm[48:60], lm[17:22], lm[22:27]):  # eyes, mouth, brows
        cv2.fillPoly(painted, [np.round(points).astype(np.int32)], (255, 0, 255))
    assert light is not None
    again = skin_light(painted, lm)
    assert again is not None
    assert np.abs(again - light).max() < 1.0


def test_lips_take_the_patients_colour_and_the_skin_does_not_move(
    bank_path: Path, pair: list[np.ndarray]
) -> None:
    crop, lm = _patient_crop(pair[0])
    # a mauve-lipped patient: lips moved in Lab by less than the shift limit
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[cv2.fillPoly(np.zeros(crop.shape[:2], np.uint8), [np.round(lm[48:60]).astype(np.int32)], 1) > 0] += (
        -20,
        -8,
        -12,
    )
    patient = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    want = feature_colours(patient, lm)
    bank = load_bank(bank_path)
    donor, ref = bank.photos[0].texture, bank.reference
    out = match_features(donor, ref, want)
    lab_in = cv2.cvtColor(donor, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)
    lips = np.zeros(donor.shape[:2], np.uint8)
    cv2.fillPoly(lips, [np.round(ref[48:60]).astype(np.int32)], 1)
    cv2.fillPoly(lips, [np.round(ref[60:68]).astype(np.int32)], 0)
    lips_in, lips_out = lab_in[lips > 0].mean(0), lab_out[lips > 0].mean(0)
    assert want[0] is not None
    assert np.abs(lips_in - want[0]).max() > 8  # the donor's lips differ from the patient's
    assert np.abs(lips_out - want[0]).max() < 0.5 * np.abs(lips_in - want[0]).max()
    cheek = skin_mask(ref, 512)
    cheek[int(ref[48:68, 1].min()) - 25 :] = False  # skin above the mouth, away from eyes by the skin mask
    assert np.abs(lab_out[cheek] - lab_in[cheek]).mean() < 1.0


def test_strong_rungs_are_soft_limited_around_the_donor_average(bank_path: Path) -> None:
    average = load_bank(bank_path).photos[0].texture.astype(np.float32)
    blotch = np.zeros(average.shape[:2], np.float32)
    cv2.circle(blotch, (200, 300), 40, 1.0, -1)
    texture = average - 70.0 * blotch[..., None] + 5.0  # a dark cheek blotch and a small overall shift
    out = soften(texture, average, 28.0)
    light = (out - average) @ np.array([0.299, 0.587, 0.114], np.float32)
    assert light.min() > -28.0  # the blotch is held under the limit...
    assert light[300, 200] < -20.0  # ...but still darker (the rung still changes the face)
    assert np.allclose(light[blotch == 0], 5.0, atol=0.2)  # small deviations pass unchanged


def test_highlights_are_held_to_the_patients_and_eye_whites_are_spared(
    bank_path: Path, pair: list[np.ndarray]
) -> None:
    crop, lm = _patient_crop(pair[0])
    light = skin_light(crop, lm)
    level = highlight_level(crop, lm, light)
    assert light is not None and 4.0 <= level < 40.0
    glossy = crop.astype(np.float32)
    cheek = (int(lm[2, 0] + 0.3 * (lm[31, 0] - lm[2, 0])), int(lm[29, 1]))
    spot = np.zeros(crop.shape[:2], np.float32)
    cv2.circle(spot, cheek, 25, 1.0, -1)
    eye = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(eye, [np.round(lm[36:42]).astype(np.int32)], 1)
    glossy = np.clip(glossy + 60.0 * spot[..., None] + 40.0 * eye[..., None], 0, 255).astype(np.uint8)
    out = tame_highlights(glossy, lm, light, level)
    lab_in = cv2.cvtColor(glossy, cv2.COLOR_RGB2LAB).astype(np.float32)[..., 0]
    lab_out = cv2.cvtColor(out, cv2.COLOR_RGB2LAB).astype(np.float32)[..., 0]
    assert (lab_out - light[..., 0])[cheek[1], cheek[0]] < 1.6 * level  # the glossy spot is tamed
    assert (lab_in - light[..., 0])[cheek[1], cheek[0]] > 2.0 * level
    inside = eye > 0
    assert np.abs(lab_out[inside] - lab_in[inside]).mean() < 2.0  # the eye white keeps its brightness


def test_poisson_rim_agrees_with_a_kept_region_and_hair_is_no_boundary(pair: list[np.ndarray]) -> None:
    crop, lm = _patient_crop(pair[0])
    synth = np.full_like(crop, 200)
    kept = np.zeros(crop.shape[:2], bool)
    kept[280:320, 230:280] = True
    eased = ease_into_kept(synth, crop, kept, lm)
    assert np.array_equal(eased[kept], crop[kept])  # the Poisson hole's rim values: the patient's own
    rim = cv2.dilate(kept.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~kept
    gap = np.abs(synth[rim].astype(int) - crop[rim]).mean()
    assert np.abs(eased[rim].astype(int) - crop[rim]).mean() < 0.2 * gap  # and next to it nearly so
    far = np.zeros_like(kept)
    far[100:120, 100:120] = True
    assert np.array_equal(eased[far], synth[far])
    # a fringe of dark hair painted over the forehead is left to the patient and is no Poisson boundary
    haired = crop.copy()
    top = int(lm[17:27, 1].min())
    haired[top - 60 : top - 20, int(lm[17, 0]) : int(lm[26, 0])] = (40, 30, 25)
    hair = fringe(haired, lm)
    assert hair[top - 40, int(lm[27, 0])]
    assert not hair[int(lm[29, 1]), int(lm[2, 0] + 30)]  # the cheek is no hair
    base = boundary_base(haired, synth, lm, kept)
    assert np.array_equal(base[top - 40, int(lm[27, 0])], synth[top - 40, int(lm[27, 0])])
    assert np.array_equal(
        base[int(lm[29, 1]), int(lm[2, 0] + 30)], haired[int(lm[29, 1]), int(lm[2, 0] + 30)]
    )


def test_a_strand_hanging_from_the_fringe_stays_hair_and_the_brows_do_not(pair: list[np.ndarray]) -> None:
    crop, lm = _patient_crop(pair[0])
    top = fringe_line(lm)
    haired = crop.copy()
    dark = (40, 30, 25)
    haired[: top - 20, int(lm[17, 0]) : int(lm[26, 0])] = dark  # a fringe over the forehead
    # a strand from it down past the fringe line, between the brows' inner ends, ending above the nose
    x = int(lm[27, 0])
    haired[top - 25 : int(lm[27, 1]) - 30, x - 6 : x + 6] = dark
    # the patient's brows, joined to the strand by a dark line along them
    for brow in (lm[17:22], lm[22:27]):
        cv2.polylines(haired, [np.round(brow).astype(np.int32)], False, dark, 9)
    cv2.line(haired, (x, int(lm[21, 1])), tuple(np.round(lm[21]).astype(int)), dark, 9)
    # a brow's tail past its last landmark, joined to hair down the temple
    iod = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
    tail = (int(lm[26, 0] + 0.25 * iod), int(lm[26, 1] + 0.03 * iod))
    cv2.line(haired, tuple(np.round(lm[26]).astype(int)), tail, dark, 7)
    cv2.line(haired, (tail[0], 0), tail, dark, 9)
    loose = (int(lm[19, 0]), top + 8)  # a dark spot below the line that touches no hair
    cv2.circle(haired, loose, 6, dark, -1)
    below = (x, top + 4)  # under the fringe line, over the brows' ceiling
    matte = hanging_matte(haired, lm)
    assert matte is not None
    # cut at the fringe line, the strand below it met the synthetic forehead with a straight edge
    assert not fringe(haired, lm)[below[1], below[0]]
    assert matte[below[1], below[0]] > 0.9
    assert matte[loose[1], loose[0]] == 0
    assert matte[tail[1], tail[0]] == 0
    for point in lm[17:27]:  # the brows are the patient's features: replaced, never kept
        assert matte[int(point[1]), int(point[0])] == 0
    assert not matte[int(np.mean(lm[36:48, 1])) :].any()  # nothing at or below the eyes
    assert hanging_matte(crop, lm) is None or hanging_matte(crop, lm)[below[1], below[0]] == 0


def test_skin_between_a_fringes_tips_stays_synthetic_and_the_tips_fade(pair: list[np.ndarray]) -> None:
    crop, lm = _patient_crop(pair[0])
    top = fringe_line(lm)
    iod = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
    tips = crop.copy()
    x0, x1 = int(lm[18, 0]), int(lm[25, 0])
    tips[: top - 10, x0:x1] = (40, 30, 25)  # a fringe
    for x in range(x0, x1 - 6, 14):  # its tips: 6 px strands 8 px apart, hanging down to the brows
        tips[top - 10 : int(lm[19, 1]), x : x + 6] = (40, 30, 25)
    matte = hanging_matte(tips, lm)
    assert matte is not None
    assert matte[top + 2, x0 + 2] > 0.8  # a strand under the line is laid over the blend
    assert matte[top + 2, x0 + 10] < 0.2  # the patient's skin between two tips is not
    # no straight edge: the strand fades out over the rows above the brows
    column = matte[top : int(lm[19, 1]), x0 + 2]
    assert np.count_nonzero((column > 0.05) & (column < 0.95)) >= 3
    # laid over, the blend keeps the patient's strand and its own skin between
    blended = np.full_like(tips, 200)
    out = lay_over(blended, tips, matte)
    assert np.abs(out[top + 2, x0 + 2].astype(int) - tips[top + 2, x0 + 2]).max() < 0.2 * 200
    assert np.abs(out[top + 2, x0 + 10].astype(int) - 200).max() < 0.2 * 200
    assert lay_over(blended, tips, None) is blended
    # a highlight straddling the line is no hair: it does not hang below it
    shiny = crop.astype(np.float32)
    centre = (int(lm[27, 0]), top)
    spot = np.zeros(crop.shape[:2], np.float32)
    cv2.circle(spot, centre, int(0.12 * iod), 1.0, -1)
    shiny = np.clip(shiny + 90.0 * spot[..., None], 0, 255).astype(np.uint8)
    matte = hanging_matte(shiny, lm)
    assert matte is None or matte[centre[1] + int(0.08 * iod), centre[0]] == 0


def test_the_detail_donor_is_of_the_patients_sex_and_nearest_in_age(bank_path: Path) -> None:
    bank = load_bank(bank_path)
    groups = bank.by_identity()
    donors = [groups[i] for i in sorted(groups)]
    for photos, sex, age in zip(
        donors, ("M", "F", "F", "M", "F"), (25.0, 60.0, 31.0, 58.0, 30.0), strict=False
    ):
        for p in photos:
            p.sex, p.age = sex, age
    assert detail_donor(donors, "F", 62.0) == 1
    assert detail_donor(donors, "M", 62.0) == 3
    assert detail_donor(donors, "F", 29.0) == 2  # 31 and 30 are both within 5 years: the seeded order wins
    assert detail_donor(donors, "", float("nan")) == 0


def test_the_reduced_size_light_matches_the_full_size_blur(pair: list[np.ndarray]) -> None:
    from anonymizer.engines import surrogate_colour

    crop, lm = _patient_crop(pair[0])
    fast = skin_light(crop, lm)
    full = surrogate_colour._wide_blur
    try:
        surrogate_colour._wide_blur = lambda image, sigma: cv2.GaussianBlur(image, (0, 0), sigma)
        reference = skin_light(crop, lm)
    finally:
        surrogate_colour._wide_blur = full
    assert fast is not None and reference is not None
    assert np.abs(fast - reference)[skin_mask(lm, 512)].max() < 1.0  # under one level of Lab on the skin


def _dark_parts(image: np.ndarray, landmarks: np.ndarray) -> list[np.ndarray]:
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    return [m for n, m in enumerate(_feature_masks(lab, landmarks)) if n % 2 == 1]


def _dark_lightness(image: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    return np.array([lab[..., 0][m].mean() for m in masks])


def test_iris_darken_darkens_a_lighter_synthetic_iris_towards_the_patient_and_never_lightens(
    bank_path: Path,
) -> None:
    bank = load_bank(bank_path)
    synth, ref = bank.photos[0].texture, bank.reference
    masks = _dark_parts(synth, ref)
    own = feature_colours(synth, ref)

    def patient(lift: float) -> list[np.ndarray | None]:
        """The synthetic face's own feature colours with the dark part of each eye ``lift`` levels lighter."""
        return [c if n % 2 == 0 or c is None else c + np.array([lift, 0.0, 0.0]) for n, c in enumerate(own)]

    for lift in (-20.0, -60.0, 20.0):
        off = match_features(synth, ref, patient(lift))
        assert np.array_equal(match_features(synth, ref, patient(lift), 0.0), off)
        on = match_features(synth, ref, patient(lift), 1.0)
        moved = _dark_lightness(on, masks) - _dark_lightness(off, masks)
        if lift > 0:  # a patient with lighter irises: the synthetic ones are not lifted
            assert np.array_equal(on, off)
        else:  # darker, by the gap (less the soft edge's spill) but never past FEATURE_SHIFT
            assert (moved < -0.6 * min(-lift, FEATURE_SHIFT)).all(), moved
            assert (moved > -FEATURE_SHIFT - 1.0).all(), moved
    # the iris's lighter part (bright half, below the white's mean lightness) darkens too; the whites hardly
    lab = cv2.cvtColor(synth, cv2.COLOR_RGB2LAB).astype(np.float32)
    bright = _feature_masks(lab, ref)[2]
    light = lab[..., 0]
    iris = bright & (light < light[bright].mean() - 10)
    white = bright & (light > light[bright].mean() + 10)
    on_lab = cv2.cvtColor(match_features(synth, ref, patient(-20.0), 1.0), cv2.COLOR_RGB2LAB).astype(
        np.float32
    )
    off_lab = cv2.cvtColor(match_features(synth, ref, patient(-20.0)), cv2.COLOR_RGB2LAB).astype(np.float32)
    assert iris.sum() >= 8 and white.sum() >= 8
    assert (on_lab[..., 0] - off_lab[..., 0])[iris].mean() < -5.0
    assert (on_lab[..., 0] - off_lab[..., 0])[white].mean() > (on_lab[..., 0] - off_lab[..., 0])[
        iris
    ].mean() + 3
    half = match_features(synth, ref, patient(-20.0), 0.5)
    full = match_features(synth, ref, patient(-20.0), 1.0)
    off = match_features(synth, ref, patient(-20.0))
    between = _dark_lightness(half, masks)
    assert (between < _dark_lightness(off, masks)).all() and (between > _dark_lightness(full, masks)).all()
