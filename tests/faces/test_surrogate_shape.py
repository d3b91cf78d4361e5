"""The surrogate's target shape: the free mouth and eyes follow the patient's expression, and no warp
triangle folds over (a fold smears texture into a streak)."""

from __future__ import annotations

import numpy as np

from anonymizer.engines.surrogate import Strength, _signed_areas, _target_shape, _without_folds
from anonymizer.engines.surrogate_shape import inset_domain
from anonymizer.faces import align
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.regions import interocular
from anonymizer.faces.warp import extended, triangulate
from anonymizer.plans import Region
from tests.faces.conftest import load_rgb

SIZE = 256


def _real_face() -> np.ndarray:
    """A real face's 68 landmarks in the canonical crop."""
    landmarks = detect_faces(load_rgb("017_03"))[0].landmarks
    return align.apply(align.canonical_alignment(landmarks, SIZE).matrix, landmarks)


def test_a_folding_target_is_pulled_back_until_no_triangle_flips() -> None:
    face = _real_face()
    tris = triangulate(extended(face, SIZE))
    target = face.copy()
    target[36:42] += [60.0, 0.0]  # the right eye thrown across the nose: triangles fold
    before = _signed_areas(extended(face, SIZE), tris)
    assert np.any(_signed_areas(extended(target, SIZE), tris) * np.sign(before) <= 0)
    fixed = _without_folds(target, face, face, tris, SIZE)
    assert np.all(_signed_areas(extended(fixed, SIZE), tris) * np.sign(before) > 0)
    assert np.abs(fixed - face).max() > 1.0  # pulled back, not reset


def width(landmarks: np.ndarray) -> float:
    return float(landmarks[54, 0] - landmarks[48, 0])


def test_free_mouth_follows_the_patients_smile_and_kept_mouth_stays() -> None:
    patient, donor = _real_face(), _real_face()
    centre = patient[48:68, 0].mean()
    patient[48:68, 0] = centre + 1.4 * (patient[48:68, 0] - centre)  # the patient smiles: a wider mouth
    strength = Strength(1.0, 1.0, 0.0)
    free = _target_shape(patient, donor, (), 1.0, strength, expression_follow=0.6)
    still = _target_shape(patient, donor, (), 1.0, strength, expression_follow=0.0)
    kept = _target_shape(patient, donor, (Region.MOUTH,), 1.0, strength, expression_follow=0.6)
    assert width(still) < width(free) < width(patient)
    assert width(free) > width(donor) + 0.5 * (width(patient) - width(donor))
    assert np.allclose(kept[48:68], patient[48:68])


def test_the_inset_domain_on_the_masks_box_is_the_whole_masks_bit_for_bit() -> None:
    """surrogate_shape._inside_distance (issue-11t9): the distance transform on the set pixels' box grown by
    one pixel is the whole image's to float rounding, and ``inset_domain``'s mask made from it is the former
    one (the whole image's transform) bit for bit: faces inside the crop, touching each edge, none at all."""
    import cv2

    from anonymizer.engines.surrogate_shape import _inside_distance

    def former(mask: np.ndarray, landmarks: np.ndarray, inset: float, jaw_inset: float) -> np.ndarray:
        iod = interocular(landmarks)
        wide, narrow = max(1, int(inset * iod)), max(1, int(jaw_inset * iod))
        dist = cv2.distanceTransform((mask > 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        split = int(np.clip(np.asarray(landmarks)[29, 1], 0, mask.shape[0]))
        keep = np.zeros(mask.shape, bool)
        keep[:split] = dist[:split] > wide + 0.5
        keep[split:] = dist[split:] > narrow + 0.5
        return keep.astype(np.uint8) * 255

    rng = np.random.default_rng(5)
    size = 512
    masks = [np.zeros((size, size), np.uint8)]
    for _ in range(24):
        mask = np.zeros((size, size), np.uint8)
        centre = rng.integers(-40, size + 40, 2)
        axes = rng.integers(20, 260, 2)
        cv2.ellipse(mask, (int(centre[0]), int(centre[1])), (int(axes[0]), int(axes[1])),
                    float(rng.uniform(0, 180)), 0, 360, 1, -1)
        mask[rng.random((size, size)) < 0.002] = 0  # holes: zeros inside the box too
        masks.append(mask)
    full = np.ones((size, size), np.uint8)
    full[0, 0] = 0
    masks.append(full)  # the box is the whole crop
    landmarks = np.zeros((68, 2), np.float32)
    for mask in masks:
        want = cv2.distanceTransform(mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        got = _inside_distance(mask)
        assert got.dtype == want.dtype and np.allclose(got, want, rtol=0, atol=1e-4)
        assert np.array_equal(got == 0, want == 0)
        for iod, nose in ((138.0, 260.0), (60.0, 100.0), (300.0, 480.0)):
            landmarks[36:42, 0], landmarks[42:48, 0] = 0.0, iod  # eye centres iod apart
            landmarks[29, 1] = nose
            for inset, jaw in ((0.10, 0.02), (0.25, 0.05)):
                new = inset_domain(mask * 255, landmarks, inset, jaw)
                assert np.array_equal(new, former(mask * 255, landmarks, inset, jaw))
