"""Keyed synthetic identities: one patient gets one identity in every photo; two patients get identities
about as far apart as two strangers (not two mixes of the same donors, which look alike)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings, _peers
from anonymizer.engines.surrogate_donors import _patient_profile, choose_donors
from anonymizer.engines.surrogate_identity import identity_coefficients, identity_key, mix
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import PipelineSettings, _align_all
from anonymizer.faces.regions import RegionSettings, region_mask
from anonymizer.plans import Region


def test_coefficients_are_keyed_unit_vectors_with_no_dominant_donor() -> None:
    a = identity_coefficients(identity_key(1, ("a", "b")), 8)
    assert np.allclose(a, identity_coefficients(identity_key(1, ("a", "b")), 8))  # same key, same identity
    assert not np.allclose(a, identity_coefficients(identity_key(2, ("a", "b")), 8))
    assert not np.allclose(a, identity_coefficients(identity_key(1, ("a", "c")), 8))
    for key in range(200):
        c = identity_coefficients(key, 8, max_share=0.45)
        assert np.isclose(np.linalg.norm(c), 1.0) and np.abs(c).max() <= 0.45 + 0.005 and abs(c.sum()) < 1e-9


def test_two_keys_give_nearly_orthogonal_identities() -> None:
    cosines = [
        float(identity_coefficients(2 * i, 8) @ identity_coefficients(2 * i + 1, 8)) for i in range(300)
    ]
    # random directions in 8 dimensions: mean 0, spread about 1/sqrt(8); a convex mix would be cosine 1
    assert abs(np.mean(cosines)) < 0.06
    assert np.mean(np.abs(cosines)) < 0.35


def test_mix_moves_one_real_persons_distance_from_the_centre() -> None:
    rng = np.random.default_rng(0)
    donors = rng.standard_normal((8, 5000)).astype(np.float32)  # deviations of unit size per component
    centre = np.zeros(5000, np.float32)
    c = identity_coefficients(7, 8)
    out = mix(centre, donors, c, typicality=1.0)
    person = np.linalg.norm(donors[0])
    assert 0.9 * person < np.linalg.norm(out) < 1.1 * person
    assert np.allclose(mix(centre, donors, c, typicality=0.5), 0.5 * out, atol=1e-4)
    # far from every donor: no closer to any of them than the centre is, give or take the largest share
    assert min(np.linalg.norm(out - d) for d in donors) > 0.95 * person


@pytest.fixture(scope="module")
def prepared(bank_path: Path, pair: list[np.ndarray]) -> tuple[SurrogateEngine, list, dict]:
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, (), PipelineSettings())
    faces = [r.aligned for r in records]
    return engine, faces, _patient_profile(faces, engine.bank)


def _identity(engine: SurrogateEngine, faces: list, profile: dict, seed: int) -> list[np.ndarray]:
    """The keyed identity change of the synthetic texture (its departure from the donors' plain mean), per
    photo of the group."""
    bank = engine.bank
    choice = choose_donors(bank, seed, profile, engine.settings)
    groups = bank.by_identity()
    donors = [groups[i] for i in choice.identities]
    peers = [groups[i] for i in _peers(bank, profile)]
    plain = np.full(len(donors), 1 / len(donors))
    c = identity_coefficients(identity_key(choice.seed, choice.identities), len(donors))
    size = bank.crop_size
    inside = region_mask(bank.reference, [Region.FACE], (size, size), settings=RegionSettings(0.0))
    out = []
    for face in faces:
        base = engine._peer_base(face, peers, face.image.astype(np.float32))
        mixed = engine._ingredients(face, donors, base, plain, coefficients=c).average
        convex = engine._ingredients(face, donors, base, plain, coefficients=None).average
        out.append((mixed - convex)[inside].ravel())  # the face, not the donors' hair and background
    return out


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_one_patient_one_identity_two_patients_two(prepared: tuple) -> None:
    engine, faces, profile = prepared
    one = _identity(engine, faces, profile, seed=11)
    other = _identity(engine, faces, profile, seed=12)
    assert _cosine(one[0], one[1]) > 0.9  # neutral and smiling photo: the same identity change
    # another patient (seed): another change. Not orthogonal in pixels: a few donors' deviations (lighting,
    # forehead hair) carry most of the variance of this small bank.
    assert np.linalg.norm(one[0] - other[0]) > 0.5 * np.linalg.norm(one[0])


def test_two_patients_sharing_every_donor_get_two_people(bank_path: Path, pair: list[np.ndarray]) -> None:
    """The 8-identity test bank gives any two patients nearly the same donors, and their convex mixes looked
    alike (0.51 apart by dlib). Two keys (two patients) on the same photo must give two different people."""
    from anonymizer.faces.pipeline import run_group
    from anonymizer.faces.verify import descriptor, distance

    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))

    def output(seed: int) -> np.ndarray:
        image = run_group(pair[:1], engine, seed, ())[0].image
        return descriptor(image, detect_faces(image)[0].landmarks)

    assert distance(output(0xA11CE), output(0xB0B)) > 0.6
