"""The surrogate's anti-face term: the patient's facial structure flipped, bounded and band-limited."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from anonymizer.engines.surrogate import ANTI_CLIP, _anti_face

SIZE, BLUR = 128, 8.0


def _blob(dy: int, dx: int, amplitude: float) -> np.ndarray:
    """A grey texture with one dark structure (a brow-sized blob) at an offset from the centre."""
    plane = np.zeros((SIZE, SIZE), np.float32)
    cv2.circle(plane, (SIZE // 2 + dx, SIZE // 2 + dy), 6, amplitude, -1)
    plane = cv2.GaussianBlur(plane, (0, 0), 2.0)
    return np.repeat((128.0 + plane)[..., None], 3, axis=2)


def _weight() -> np.ndarray:
    weight = np.zeros((SIZE, SIZE), np.float32)
    cv2.circle(weight, (SIZE // 2, SIZE // 2), 40, 1.0, -1)
    return weight[..., None]


def test_anti_face_points_against_the_patients_own_structure() -> None:
    centre = _blob(0, 0, 0.0)  # the demographic mean has no blob
    patient = _blob(-10, 0, -40.0)  # the patient has a dark blob above the centre
    anti = _anti_face(centre, patient, _weight(), BLUR)[..., 0]
    y, x = SIZE // 2 - 10, SIZE // 2
    assert anti[y, x] > 5.0  # where the patient is darker, the anti-face is lighter
    assert abs(anti[SIZE // 2 + 25, x]) < 0.5 * anti[y, x]  # and it stays local


def test_anti_face_is_bounded_and_zero_outside_the_face() -> None:
    centre = _blob(0, 0, 0.0)
    patient = _blob(0, 0, -200.0)  # an extreme structure: soft-clipped, never an inverted streak
    weight = _weight()
    anti = _anti_face(centre, patient, weight, BLUR)
    assert np.abs(anti).max() <= ANTI_CLIP + 1e-3
    assert np.all(anti[weight[..., 0] == 0] == 0)


def test_anti_face_leaves_no_negative_of_a_mole() -> None:
    """A mole-sized spot is despeckled away before the flip; a structure the size of a brow is not."""
    blur = 30.0  # 0.25 × inter-ocular distance at this scale
    centre = _blob(0, 0, 0.0)
    mole = np.zeros((SIZE, SIZE), np.float32)
    cv2.circle(mole, (SIZE // 2, SIZE // 2), 3, -90.0, -1)
    patient = centre + mole[..., None]
    anti = _anti_face(centre, patient, _weight(), blur)[..., 0]
    assert np.abs(anti).max() < 1.0
    brow = np.zeros((SIZE, SIZE), np.float32)
    cv2.ellipse(brow, (SIZE // 2, SIZE // 2 - 10), (22, 9), 0, 0, 360, -40.0, -1)
    anti = _anti_face(centre, centre + brow[..., None], _weight(), blur)[..., 0]
    assert anti[SIZE // 2 - 10, SIZE // 2] > 5.0


def test_reduced_wide_blur_is_off_by_default_and_within_a_level_of_the_full_blur() -> None:
    """settings.repel_reduced_blur (issue-11t9): the band's wide blur made at reduced size moves the repel
    term by under a level at the engine's scale (a 512 crop, blur 0.25 × inter-ocular ~ 35 px), still points
    against the structure, and is not the full path (it is a different computation); off by default."""
    from anonymizer.engines.surrogate_settings import SurrogateSettings

    assert SurrogateSettings().repel_reduced_blur is False
    size, blur = 512, 35.0
    rng = np.random.default_rng(3)
    plane = np.zeros((size, size), np.float32)
    for _ in range(12):  # brow- and lid-sized structures of either sign
        centre = (int(rng.integers(150, 360)), int(rng.integers(150, 360)))
        cv2.circle(plane, centre, int(rng.integers(6, 30)), float(rng.uniform(-60, 60)), -1)
    plane = cv2.GaussianBlur(plane, (0, 0), 3.0)
    patient = np.repeat((128.0 + plane + rng.normal(0, 4, plane.shape))[..., None], 3, axis=2)
    centre = np.full((size, size, 3), 128.0, np.float32) + rng.normal(0, 4, (size, size, 3))
    weight = np.zeros((size, size), np.float32)
    cv2.circle(weight, (size // 2, size // 2), 200, 1.0, -1)
    weight = cv2.GaussianBlur(weight, (0, 0), 16.0)[..., None]
    full = _anti_face(centre.astype(np.float32), patient.astype(np.float32), weight, blur)
    assert np.array_equal(full, _anti_face(centre, patient, weight, blur, reduced=False))
    reduced = _anti_face(centre, patient, weight, blur, reduced=True)
    assert not np.array_equal(reduced, full)
    assert np.abs(reduced - full).max() < 1.0
    assert np.corrcoef(reduced.ravel(), full.ravel())[0, 1] > 0.99


def test_the_patients_anti_face_at_reduced_size_is_a_setting_within_a_level(bank_path: Path) -> None:
    """settings.patient_reduced_blur (issue-11t13): the patient's own anti-face term (once per group) with
    its wide band blurred at reduced size; off by default (the full-size kernels, as before), on within a
    level of it and not the same computation."""
    from anonymizer.donors import load_bank
    from anonymizer.engines.surrogate import SurrogateEngine
    from anonymizer.engines.surrogate_settings import SurrogateSettings
    from anonymizer.faces.regions import interocular

    assert SurrogateSettings().patient_reduced_blur is False
    bank = load_bank(bank_path)
    off = SurrogateEngine(SurrogateSettings(), bank)
    on = SurrogateEngine(SurrogateSettings(patient_reduced_blur=True), bank)
    size, blur = bank.crop_size, 0.25 * interocular(bank.reference)
    rng = np.random.default_rng(4)
    plane = np.zeros((size, size), np.float32)
    for _ in range(12):  # brow- and lid-sized structures of either sign
        centre = (int(rng.integers(150, 360)), int(rng.integers(150, 360)))
        cv2.circle(plane, centre, int(rng.integers(6, 30)), float(rng.uniform(-60, 60)), -1)
    patient = np.repeat((128.0 + cv2.GaussianBlur(plane, (0, 0), 3.0))[..., None], 3, axis=2)
    centre = np.full((size, size, 3), 128.0, np.float32) + rng.normal(0, 4, (size, size, 3))
    patient, centre = patient.astype(np.float32), centre.astype(np.float32)
    full = off._patient_anti(centre, patient, blur)
    assert np.array_equal(full, _anti_face(centre, patient, off._anti_weight(), blur))
    reduced = on._patient_anti(centre, patient, blur)
    assert not np.array_equal(reduced, full) and np.abs(reduced - full).max() < 1.0
