"""The eyes kept, second round (issue-11e3): the synthetic mouth opens no wider than the patient's, and an
open mouth's interior (teeth) comes from one donor photo, the most open of the set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_mouth import (
    INNER_LIPS,
    LOWER_LIP,
    UPPER_LIP,
    cap_opening,
    cap_width,
    interior_weight,
    open_donor,
    with_interior,
)
from anonymizer.faces.regions import interocular
from anonymizer.plans import Region


def test_the_open_mouth_takes_its_interior_from_the_most_open_donor_photo(bank_path: Path) -> None:
    bank = load_bank(bank_path)
    size, ref = bank.crop_size, bank.reference
    closed, wide = bank.photos[0], bank.photos[1]
    teeth = wide.texture.copy()
    cv2.fillPoly(teeth, [np.round(ref[INNER_LIPS]).astype(np.int32)], (250, 250, 245))
    smiling = replace(wide, texture=teeth, expression=np.array([0.15, 0.95], np.float32))
    neutral = replace(closed, expression=np.array([0.01, 0.8], np.float32))
    donors = [[neutral], [replace(wide, expression=np.array([0.04, 0.9], np.float32)), smiling]]
    assert open_donor(donors, 0.06) is smiling
    assert open_donor(donors, 0.2) is None  # no donor's mouth that open: the mix stays as it is
    average = np.full((size, size, 3), 150.0, np.float32)
    weight = interior_weight(ref, size)
    mixed = with_interior(average, smiling.texture, weight)
    middle = np.round(ref[INNER_LIPS].mean(0)).astype(int)
    assert mixed[middle[1], middle[0]].min() > 230  # mostly the donor's teeth at the slit's centre
    far = np.ones((size, size), np.uint8)
    cv2.fillPoly(far, [np.round(ref[48:60]).astype(np.int32)], 0)
    far = cv2.distanceTransform(far, cv2.DIST_L2, 5) > 0.15 * interocular(ref)
    assert np.array_equal(mixed[far], average[far])  # nothing changes away from the mouth


def test_the_synthetic_mouth_opens_no_wider_than_the_patients(bank_path: Path) -> None:
    patient = load_bank(bank_path).reference.astype(np.float64)  # a closed mouth, a few pixels apart
    iod = interocular(patient)
    target = 1.1 * (patient - patient.mean(0)) + patient.mean(0) + 3.0  # another size and place
    target[LOWER_LIP] += [0.0, 0.2 * iod]  # the transfer's open mouth
    capped = cap_opening(target, patient, 0.02).astype(np.float64)
    gap = np.linalg.norm(capped[66] - capped[62]) / interocular(capped)
    assert gap <= np.linalg.norm(patient[66] - patient[62]) / iod + 0.02 + 1e-4
    lips = UPPER_LIP + LOWER_LIP
    for lip in (UPPER_LIP, LOWER_LIP):  # each lip moved as a whole: its thickness kept
        moved = capped[lip] - target[lip]
        assert np.abs(moved - moved.mean(0)).max() < 1e-3 and np.abs(moved).max() > 1.0
    assert np.allclose(np.delete(capped, lips, 0), np.delete(target, lips, 0), atol=1e-3)
    closed = cap_opening(patient, patient, 0.02)
    assert np.allclose(closed, patient, atol=1e-3)  # no wider than the patient's: left as it is


def test_the_synthetic_mouth_is_no_wider_than_the_patients(bank_path: Path) -> None:
    patient = load_bank(bank_path).reference.astype(np.float64)
    iod = interocular(patient)
    target = patient.copy()
    centre = target[48:68].mean(0)
    target[48:68, 0] = centre[0] + 1.25 * (target[48:68, 0] - centre[0])  # the transfer's wide mouth
    capped = cap_width(target, patient, 0.02).astype(np.float64)
    width = np.linalg.norm(capped[54] - capped[48]) / interocular(capped)
    assert width <= np.linalg.norm(patient[54] - patient[48]) / iod + 0.02 + 1e-4
    assert np.allclose(capped[48:68].mean(0), centre, atol=1e-3)  # squeezed about its own centre
    axis = (target[54] - target[48]) / np.linalg.norm(target[54] - target[48])
    moved = capped[48:68] - target[48:68]
    assert np.abs(moved[:, 0] * axis[1] - moved[:, 1] * axis[0]).max() < 1e-3  # along the corners' line
    assert np.array_equal(capped[:48], target[:48].astype(np.float32))  # nothing else moves
    assert np.allclose(cap_width(patient, patient, 0.02), patient, atol=1e-3)  # not wider: left alone


def test_the_mouth_interior_is_on_only_with_the_eyes_kept(bank_path: Path) -> None:
    settings = SurrogateSettings()
    engine = SurrogateEngine(settings, load_bank(bank_path))
    # the base stays off
    assert settings.mouth_interior == 0.0 and settings.mouth_opening < 0 and settings.mouth_width < 0
    eyes = engine._for_regions((Region.EYES,)).settings
    assert eyes.mouth_interior > 0 and eyes.mouth_opening >= 0 and eyes.mouth_width >= 0
    for preserve in ((), (Region.MOUTH,), (Region.NOSE,)):
        other = engine._for_regions(preserve).settings
        assert other.mouth_interior == 0.0 and other.mouth_opening < 0 and other.mouth_width < 0


def test_the_mouth_settings_reach_the_nothing_kept_engine_through_nothing_kept(bank_path: Path) -> None:
    """issue-11zm: appended to ``nothing_kept`` (tried, off by default), the mouth's caps and teeth reach
    the nothing-kept engine alone, beside its texture spread; the other settings' engines stay as they are."""
    base = SurrogateSettings()
    mouth = (("mouth_opening", 0.02), ("mouth_width", 0.02), ("mouth_interior", 0.06))
    settings = replace(base, nothing_kept=(*base.nothing_kept, *mouth))
    engine = SurrogateEngine(settings, load_bank(bank_path))
    nothing = engine._for_regions(()).settings
    assert (nothing.mouth_opening, nothing.mouth_width, nothing.mouth_interior) == (0.02, 0.02, 0.06)
    for name, value in base.nothing_kept:  # the texture spread (issue-11z3) is still applied
        assert getattr(nothing, name) == value
    default = SurrogateEngine(base, load_bank(bank_path))
    for preserve in ((Region.MOUTH,), (Region.NOSE,), (Region.EYES,)):
        assert engine._for_regions(preserve).settings == default._for_regions(preserve).settings


def test_the_mouth_corners_move_to_the_patients_lift_and_nothing_else_moves(bank_path: Path) -> None:
    """A target whose corners were turned down (the donors' caricatured mouth) gets the patient's corner lift
    back at share 1, half of the gap at 0.5; the lips' middle, the rest of the face and share 0 stay."""
    from anonymizer.engines.surrogate_mouth import corner_lifts, keep_corners

    reference = load_bank(bank_path).reference.astype(np.float64)
    patient = 1.1 * (reference - reference.mean(0)) + reference.mean(0) + 3.0  # another size and place
    target = reference.copy()
    iod = interocular(target)
    for corner in (48, 54, 60, 64):
        target[corner, 1] += 0.08 * iod  # down in the image
    assert np.all(corner_lifts(target) < corner_lifts(patient) - 0.07)
    back = keep_corners(target, patient, 1.0)
    assert np.allclose(corner_lifts(back), corner_lifts(patient), atol=1e-3)
    half = keep_corners(target, patient, 0.5)
    assert np.allclose(corner_lifts(half), 0.5 * (corner_lifts(target) + corner_lifts(patient)), atol=1e-3)
    moved = np.abs(back - target).max(axis=1) > 1e-3
    assert set(np.flatnonzero(moved)) <= {48, 49, 53, 54, 55, 59, 60, 64}
    assert np.allclose(keep_corners(target, patient, 0.0), target, atol=1e-4)


@pytest.mark.parametrize(
    ("share", "finish", "lifted"), [(1.0, True, True), (1.0, False, False), (0.0, True, False)]
)
def test_the_corners_follow_the_patient_only_in_the_finish(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, share: float, finish: bool, lifted: bool
) -> None:
    """settings.mouth_corners acts on the target ``_synthesize`` warps to only when making the finish (the
    rung the ladder chose), so the choice of rung is the one made without it."""
    import anonymizer.engines.surrogate_synthesis as synthesis
    from anonymizer.engines.base import AlignedFace
    from anonymizer.engines.surrogate_mouth import corner_lifts
    from anonymizer.engines.surrogate_settings import Strength
    from anonymizer.engines.surrogate_synthesis import Ingredients, _PeerBase
    from anonymizer.faces.warp import extended, triangulate

    bank = load_bank(bank_path)
    size, reference = bank.crop_size, bank.reference.astype(np.float32)
    patient = reference.copy()
    iod = interocular(patient)
    for corner in (48, 54, 60, 64):
        patient[corner, 1] -= 0.06 * iod  # a smile's raised corners
    plain = np.full((size, size, 3), 128.0, np.float32)
    anti = np.zeros((size, size, 1), np.float32)
    peers = _PeerBase(centre=plain, anti=anti, shape_centre=reference, skin=None)
    ingredients = Ingredients(plain, np.zeros_like(plain), peers, reference, np.zeros_like(plain))
    face = AlignedFace(image=plain.astype(np.uint8), landmarks=patient, masks={}, descriptor=None)
    engine = SurrogateEngine(SurrogateSettings(mouth_corners=share, expression_modes=0), bank)
    warped: list[np.ndarray] = []

    class Stop(Exception):
        pass

    def stop(texture, source, target, *args, **kwargs):
        warped.append(np.asarray(target)[:68])
        raise Stop

    monkeypatch.setattr(synthesis, "piecewise_affine", stop)
    tris = triangulate(extended(reference, size))
    with pytest.raises(Stop):
        engine._synthesize(face, ingredients, tris, (Region.NOSE,), Strength(1.0, 1.0, 1.0), finish=finish)
    gap = np.abs(corner_lifts(warped[0]) - corner_lifts(patient)).max()
    assert (gap < 1e-3) == lifted


@pytest.mark.parametrize(
    ("least", "opening", "changed"), [(0.06, 0.15, True), (0.06, 0.02, False), (0.0, 0.15, False)]
)
def test_the_finish_takes_the_teeth_only_for_an_open_mouth(
    bank_path: Path, monkeypatch: pytest.MonkeyPatch, least: float, opening: float, changed: bool
) -> None:
    """settings.finish_interior: the chosen rung's ingredients get the set's most open donor photo's mouth
    interior when the patient's mouth is at least that open; a closed mouth or the setting off: as given."""
    import anonymizer.engines.surrogate_synthesis as synthesis
    from anonymizer.engines.base import AlignedFace
    from anonymizer.engines.surrogate_synthesis import Ingredients, _PeerBase

    bank = load_bank(bank_path)
    size, reference = bank.crop_size, bank.reference.astype(np.float32)
    wide = max(bank.photos, key=lambda p: float(p.expression[0]))
    monkeypatch.setattr(synthesis, "open_donor", lambda donors, at_least: wide)
    monkeypatch.setattr(synthesis, "expression", lambda landmarks: np.array([opening, 0.9], np.float32))
    plain = np.full((size, size, 3), 128.0, np.float32)
    peers = _PeerBase(
        centre=plain, anti=np.zeros((size, size, 1), np.float32), shape_centre=reference, skin=None
    )
    ingredients = Ingredients(plain, np.zeros_like(plain), peers, reference, np.zeros_like(plain))
    face = AlignedFace(image=plain.astype(np.uint8), landmarks=reference, masks={}, descriptor=None)
    engine = SurrogateEngine(SurrogateSettings(finish_interior=least), bank)
    made = engine._with_teeth(face, ingredients, list(bank.by_identity())[:2])
    assert (made is not ingredients) == changed
    if changed:
        assert np.abs(made.average - plain).max() > 20  # the donor's interior at the mouth
        assert not np.array_equal(made.coarse, ingredients.coarse)
