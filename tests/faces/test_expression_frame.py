"""The surrogate's target shape follows the patient's expression (a linear model learnt from how donors'
landmarks move between their own photos) and keeps the face's place and size (surrogate_shape.py). Real
London Set landmarks: neutral (03) and smiling (08) photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from anonymizer.donors import expression
from anonymizer.engines.surrogate_shape import (
    OUTLINE_POINTS,
    ExpressionModel,
    broad_shading,
    inset_domain,
    keep_frame,
    keep_outline_frame,
)
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from tests.faces.conftest import load_rgb

SIZE = 512
DONORS = ("001", "002", "003", "004", "005", "008")  # the model's donors: both photos each
PATIENT, OTHER = "017", "030"  # never among them


def _shape(name: str) -> np.ndarray:
    landmarks = detect_faces(load_rgb(name))[0].landmarks
    return align.apply(align.canonical_alignment(landmarks, SIZE).matrix, landmarks)


@pytest.fixture(scope="module")
def model() -> ExpressionModel:
    shapes = [[_shape(f"{i}_03"), _shape(f"{i}_08")] for i in DONORS]
    reference = np.mean([s for pair in shapes for s in pair], axis=0)
    return ExpressionModel.fit(reference, shapes, k=2)


def _smile(model: ExpressionModel, shape: np.ndarray, neutral: np.ndarray, smiling: np.ndarray) -> float:
    """Where ``shape`` lies on the first direction, 0 at the neutral photo, 1 at the smiling one."""
    lo, hi = model.coefficients(neutral)[0], model.coefficients(smiling)[0]
    return float((model.coefficients(shape)[0] - lo) / (hi - lo))


def test_the_first_direction_is_the_smile(model: ExpressionModel) -> None:
    assert model.basis.shape == (136, 2)
    assert np.allclose(model.basis.T @ model.basis, np.eye(2), atol=1e-6)
    # every person's smile moves the same way along it, held-out people too (its sign is arbitrary)
    moves = [
        model.coefficients(_shape(f"{i}_08"))[0] - model.coefficients(_shape(f"{i}_03"))[0]
        for i in (*DONORS, PATIENT, OTHER)
    ]
    assert abs(np.sign(moves).sum()) == len(moves), moves
    assert min(np.abs(moves)) > 3.0  # crop pixels, in the bank's frame


def test_a_neutral_target_takes_the_patients_smile_on_free_points_only(model: ExpressionModel) -> None:
    patient = _shape(f"{PATIENT}_08")  # smiling
    neutral, smiling = _shape(f"{OTHER}_03"), _shape(f"{OTHER}_08")  # another person: the target
    free = np.ones(68, bool)
    moved = model.transfer(neutral, patient, free)
    # where the patient's photo lies along both directions (a linear smile probe calls them alike)...
    assert np.allclose(model.coefficients(moved), model.coefficients(patient), atol=0.05)
    # ...reached by moving towards the target person's own smile
    assert _smile(model, moved, neutral, smiling) > 0.1
    assert expression(moved)[1] > expression(neutral)[1]  # a wider mouth
    assert np.abs(moved - neutral).max() < 0.1 * SIZE  # an expression change, not a new face
    free[48:68] = False  # mouth kept: it cannot move, the rest still follows
    kept = model.transfer(neutral, patient, free)
    assert np.array_equal(kept[48:68], neutral[48:68].astype(np.float32))
    assert np.abs(kept[:48] - neutral[:48]).max() > 0.5


def test_a_bank_without_a_second_photo_per_donor_transfers_nothing() -> None:
    shapes = [[_shape(f"{i}_03")] for i in DONORS[:3]]
    empty = ExpressionModel.fit(shapes[0][0], shapes, k=2)
    target = _shape(f"{OTHER}_03")
    assert empty.basis.shape[1] == 0
    assert np.array_equal(empty.transfer(target, _shape(f"{PATIENT}_08"), np.ones(68, bool)), target)


def test_keep_frame_restores_place_and_size_of_the_free_points() -> None:
    patient = _shape(f"{PATIENT}_03")
    target = _shape(f"{OTHER}_03") * 1.15 + [20.0, -12.0]  # larger and shifted
    free = np.ones(68, bool)
    free[27:36] = False  # a kept nose stays put
    out = keep_frame(target, patient, free)
    assert np.allclose(out[~free], target[~free])
    assert np.allclose(out[free].mean(0), patient[free].mean(0), atol=1e-3)

    def spread(points: np.ndarray) -> float:
        return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))

    assert spread(out[free]) == pytest.approx(spread(patient[free]), rel=1e-4)
    # proportions stay the target's: only a uniform scale and shift were applied
    ratio = (out[free][1:] - out[free][0]) / (target[free][1:] - target[free][0] + 1e-9)
    assert np.nanstd(ratio[np.abs(target[free][1:] - target[free][0]) > 5]) < 1e-3


def test_keep_outline_frame_gives_the_outline_the_patients_extent_and_leaves_the_inner_face() -> None:
    patient = _shape(f"{PATIENT}_03")
    target = _shape(f"{OTHER}_03").copy()
    centre = target[:17].mean(0)
    target[:17] = centre + 1.2 * (target[:17] - centre)  # a donor outline 20 % wider
    free = np.ones(68, bool)
    free[48:68] = False  # a kept mouth stays put
    out = keep_outline_frame(target, patient, free)
    outline = list(OUTLINE_POINTS)
    assert np.array_equal(out[27:], target[27:].astype(np.float32))  # nose, eyes and mouth untouched
    assert np.allclose(out[outline].mean(0), patient[outline].mean(0), atol=1e-3)

    def width(points: np.ndarray) -> float:
        return float(np.ptp(points[:, 0]))

    # the jaw's width comes back to within a few percent of the patient's (it was 20 % wider than the donor's)
    assert abs(width(out[:17]) / width(patient[:17]) - 1) < abs(width(target[:17]) / width(patient[:17]) - 1)
    # the outline's own shape stays the donors': one uniform scale of all its points
    before, after = target[outline] - target[outline].mean(0), out[outline] - out[outline].mean(0)
    scale = np.linalg.norm(after) / np.linalg.norm(before)
    assert np.allclose(after, scale * before, atol=1e-3)


def test_broad_shading_takes_the_patients_beard_shadow_but_keeps_the_synthetic_detail() -> None:
    size = 256
    yy, xx = np.mgrid[0:size, 0:size]
    synth = np.full((size, size, 3), 170, np.uint8)
    synth[(yy // 4 + xx // 4) % 2 == 0] = 150  # fine detail of the synthetic face
    patient = np.full((size, size, 3), 170, np.uint8)
    patient[size // 2 :] = 110  # a dark, stubbled lower face
    domain = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    out = broad_shading(synth, patient, domain, sigma=12.0)
    lower = domain & (yy > size * 0.7)
    upper = domain & (yy < size * 0.3)
    assert out[lower].mean() < synth[lower].mean() - 40  # the shadow came across
    assert abs(out[upper].mean() - patient[upper].mean()) < 3  # the lit forehead: the patient's level
    detail = np.abs(np.diff(out[..., 0].astype(int), axis=1))[lower[:, 1:]].mean()
    assert detail > 0.8 * np.abs(np.diff(synth[..., 0].astype(int), axis=1))[lower[:, 1:]].mean()
    assert np.array_equal(out[~domain], synth[~domain])  # outside the blend domain: untouched


def test_the_blend_domain_reaches_further_down_the_jaw_than_up_the_forehead() -> None:
    face = _shape(f"{PATIENT}_03")
    mask = np.zeros((SIZE, SIZE), np.uint8)
    hull = np.round(np.vstack([face[:17], face[17:27] - [0, 60]])).astype(np.int32)
    cv2.fillConvexPoly(mask, cv2.convexHull(hull), 255)
    out = inset_domain(mask, face, inset=0.10, jaw_inset=0.02) > 0
    rows = np.flatnonzero(mask.any(1))
    kept = np.flatnonzero(out.any(1))
    assert out.sum() < (mask > 0).sum() and not (out & (mask == 0)).any()
    assert rows[-1] - kept[-1] < kept[0] - rows[0]  # less pulled in at the chin than at the forehead


def test_the_outline_frame_applies_only_where_named_and_not_on_overshoot_rungs() -> None:
    from types import SimpleNamespace

    from anonymizer.engines.surrogate_settings import Strength, SurrogateSettings
    from anonymizer.engines.surrogate_synthesis import Synthesis
    from anonymizer.plans import Region

    patient = _shape(f"{PATIENT}_03")
    target = _shape(f"{OTHER}_03").copy()
    target[:17] = target[:17].mean(0) + 1.2 * (target[:17] - target[:17].mean(0))
    plain, push = Strength(1.0, 1.0, 1.0), Strength(1.0, 1.0, 1.0, push=0.5)
    no_expression = SimpleNamespace(transfer=lambda t, p, free: np.asarray(t, np.float32))

    def followed(outline_frame: str, preserve: tuple[Region, ...], strength: Strength) -> np.ndarray:
        settings = SurrogateSettings(outline_frame=outline_frame)
        synthesis = SimpleNamespace(settings=settings, _expression=no_expression)
        return Synthesis._follow_patient(synthesis, target, patient, preserve, strength)  # type: ignore[arg-type]

    assert SurrogateSettings().outline_frame == ""  # off by default
    for preserve in ((), (Region.MOUTH,)):
        off, on = followed("", preserve, plain), followed("nothing,mouth", preserve, plain)
        assert np.abs(on[:27] - off[:27]).max() > 1.0  # the outline moved
        assert np.array_equal(on[27:], off[27:])  # the inner face did not
        assert np.array_equal(followed("nothing,mouth", preserve, push), followed("", preserve, push))
    eyes = (Region.EYES,)  # named for the eyes: the eyes stay where they are, the outline moves
    on = followed("eyes", eyes, plain)
    assert np.array_equal(on[36:48], target[36:48].astype(np.float32))
    assert np.abs(on[:17] - target[:17]).max() > 1.0
    assert np.array_equal(followed("nothing", eyes, plain), followed("", eyes, plain))
