"""Distinct patients stay distinct, and keep their sex: the keyed spread in the bank's face space
(surrogate_spread.py) and the demographic centre the anti-face moves from (surrogate_donors._peers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anonymizer.donors import DonorPhoto, load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_donors import _peers
from anonymizer.engines.surrogate_spread import _aligned, keyed_direction, sex_axis, spread_key


def _photo(identity: str, sex: str, ita_lab: tuple[float, float, float]) -> DonorPhoto:
    return DonorPhoto(
        identity=identity,
        landmarks=np.zeros((68, 2), np.float32),
        texture=np.zeros((4, 4, 3), np.uint8),
        descriptor=np.zeros(128, np.float32),
        skin_lab=np.array(ita_lab, np.float64),
        expression=np.zeros(2, np.float32),
        sex=sex,
    )


def test_a_woman_of_a_rare_tone_is_caricatured_from_women_not_from_everyone() -> None:
    """London set, fold 1: four women of the patient's tone, so the old rule fell back to all 19 identities
    (12 men). The anti-face (the patient's deviation from that centre, flipped) then pointed at the men and
    the eyes-kept outputs of patient 003 were called male. Tone relaxes before sex, as in the donor tiers."""
    from anonymizer.donors import DonorBank, ita_degrees

    light, dark = (70.0, 8.0, 18.0), (35.0, 14.0, 22.0)  # L*a*b* of a light and a dark skin
    photos = [_photo(f"f{i}", "F", light if i < 3 else dark) for i in range(7)]
    photos += [_photo(f"m{i}", "M", light) for i in range(12)]
    bank = DonorBank(reference=np.zeros((68, 2), np.float32), photos=photos)
    patient = {"sex": "F", "ita": ita_degrees(np.array(light))}
    peers = _peers(bank, patient)
    assert sorted(peers) == [f"f{i}" for i in range(7)]  # every woman, no man
    plenty = [_photo(f"f{i}", "F", light) for i in range(7)] + photos[7:]
    assert sorted(_peers(DonorBank(np.zeros((68, 2), np.float32), plenty), patient)) == [
        f"f{i}" for i in range(7)
    ]  # enough women of the patient's tone: those, as before


def test_keyed_directions_are_one_person_long_and_nearly_orthogonal() -> None:
    a, b = keyed_direction(spread_key(1), 12), keyed_direction(spread_key(2), 12)
    assert np.allclose(a, keyed_direction(spread_key(1), 12))  # one patient, one direction
    assert np.isclose(np.linalg.norm(a), np.sqrt(12), rtol=1e-5)
    cosines = [
        float(keyed_direction(spread_key(2 * i), 12) @ keyed_direction(spread_key(2 * i + 1), 12)) / 12
        for i in range(300)
    ]
    assert abs(np.mean(cosines)) < 0.05 and np.mean(np.abs(cosines)) < 0.35
    assert not np.allclose(a, b)


def test_the_spread_moves_each_patient_its_own_way_and_never_towards_the_other_sex(bank_path: Path) -> None:
    bank = load_bank(bank_path)
    # the space itself, without the sex guard (on by default; it removes the ridge probes' direction instead,
    # test_surrogate_sex.py)
    settings = SurrogateSettings(spread_shape=1.0, spread_texture=1.0, spread_sex_guard=False)
    engine = SurrogateEngine(settings, bank)
    one, again, other = engine._spread(11), engine._spread(11), engine._spread(12)
    assert one is not None and again is not None and other is not None
    assert np.array_equal(one[0], again[0]) and np.array_equal(one[1], again[1])  # same key, same person
    for a, b in ((one[0], other[0]), (one[1], other[1])):  # shape, texture: two patients, two ways
        assert np.linalg.norm(a - b) > 0.5 * np.linalg.norm(a) > 0
    # the shape moves by about one real person's deviation (landmarks, crop pixels)
    groups = bank.by_identity()
    shapes = np.stack([_aligned(photos[0].landmarks, bank.reference) for photos in groups.values()])
    person = np.sqrt(((shapes - shapes.mean(0)) ** 2).sum((1, 2)).mean())
    assert 0.2 * person < np.linalg.norm(one[0]) < 2.0 * person
    # no component along the bank's male-female difference (shape and texture)
    sexes = np.array([photos[0].sex for photos in groups.values()])
    assert {"F", "M"} <= set(sexes)
    axis = sex_axis((shapes[sexes == "M"].mean(0) - shapes[sexes == "F"].mean(0)).ravel())
    space = engine._space
    assert space is not None
    assert np.abs(space.shape.reshape(len(space.shape), -1) @ axis).max() < 1e-6 * np.abs(space.shape).max()
    assert abs(float(one[0].ravel() @ axis)) < 1e-3 * np.linalg.norm(one[0])
    off = SurrogateEngine(SurrogateSettings(spread_shape=0.0, spread_texture=0.0), bank)
    assert off._spread(11) is None  # off: the engine is the one before


def test_a_rung_whose_output_changes_sex_does_not_pass(bank_path: Path) -> None:
    """The self-check reads the output's sex from the donors' sex centroids; a rung with one output of the
    other sex is not good enough (003, eyes kept, was called male by the bench's probe on the overshoot
    rungs)."""
    from anonymizer.engines.surrogate_donors import apparent_sex
    from anonymizer.engines.surrogate_ladder import _Check, _kept_sex

    bank = load_bank(bank_path)
    for photo in bank.photos:  # the bank's own faces are read as their sex (every one in this bank)
        assert apparent_sex(photo.descriptor, bank) == photo.sex
    women = np.mean([p.descriptor for p in bank.photos if p.sex == "F"], axis=0)
    men = np.mean([p.descriptor for p in bank.photos if p.sex == "M"], axis=0)
    between = (women + men) / 2 + 0.1 * (men - women)  # a little on the men's side
    assert apparent_sex(between, bank) == "M" and apparent_sex(between, bank, margin=0.2) == "?"
    assert not _kept_sex([_Check(0.8, None, 3, 3, None, "?")], "M")  # too near the midpoint: not kept
    woman, man = _Check(0.8, None, 3, 3, None, "F"), _Check(0.8, None, 3, 3, None, "M")
    assert _kept_sex([woman, woman], "F")
    assert not _kept_sex([woman, man], "F")
    assert _kept_sex([woman, man], "")  # the patient's sex unknown: nothing to keep
    assert _kept_sex([_Check(float("inf"), None, 0, 0)], "M")  # no descriptor, no sex read


def test_the_shape_step_points_away_from_the_patient(bank_path: Path, pair: list[np.ndarray]) -> None:
    """Keyed, yet away from the patient's own place in the bank's shape space: a random step alone moves
    the output as far from the patient as from every real face (the linkage rank stays)."""
    from anonymizer.faces.detect import detect_faces
    from anonymizer.faces.pipeline import PipelineSettings, _align_all
    from anonymizer.faces.warp import extended, triangulate

    bank = load_bank(bank_path)
    engine = SurrogateEngine(SurrogateSettings(spread_shape=1.0, spread_texture=1.0), bank)
    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, (), PipelineSettings())
    faces = [r.aligned for r in records]
    landmarks = np.mean([f.landmarks for f in faces], axis=0)
    texture = engine._patient_texture(faces, triangulate(extended(bank.reference, bank.crop_size)))
    towards = []
    for seed in range(8):
        step = engine._spread(seed, (landmarks, texture, "M"))
        assert step is not None
        space = engine._space
        assert space is not None
        own = _aligned(landmarks, bank.reference) - space.centres["M"][0]
        towards.append(float(step[0].ravel() @ own.ravel()))
        plain = engine._spread(seed)  # without the patient: the keyed step as drawn
        assert plain is not None and np.array_equal(plain[1], step[1])  # the texture's step is not turned
    # along the directions where the patient lies clearly off the mean every key steps away; along the
    # others the step stays keyed, so most keys, and their mean, point away (this patient: 5 of 8)
    assert np.mean(towards) < 0 and sum(t < 0 for t in towards) > len(towards) / 2


def test_with_texture_away_the_texture_step_points_away_from_the_patient_too(
    bank_path: Path, pair: list[np.ndarray]
) -> None:
    """``spread_texture_away``: the texture step takes the shape step's rule (away from the patient's place
    in the bank's texture space, keyed elsewhere); off, it stays the keyed step as drawn (test above)."""
    from anonymizer.engines.surrogate_spread import _band
    from anonymizer.engines.surrogate_synthesis import _lightness
    from anonymizer.faces.detect import detect_faces
    from anonymizer.faces.pipeline import PipelineSettings, _align_all
    from anonymizer.faces.warp import extended, triangulate

    bank = load_bank(bank_path)
    settings = SurrogateSettings(spread_shape=1.0, spread_texture=1.0, spread_texture_away=True)
    engine = SurrogateEngine(settings, bank)
    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, (), PipelineSettings())
    faces = [r.aligned for r in records]
    landmarks = np.mean([f.landmarks for f in faces], axis=0)
    texture = engine._patient_texture(faces, triangulate(extended(bank.reference, bank.crop_size)))
    towards, plain_towards, turned = [], [], 0
    for seed in range(8):
        step = engine._spread(seed, (landmarks, texture, "M"))
        plain = engine._spread(seed)
        assert step is not None and plain is not None
        space = engine._space
        assert space is not None
        own = _band(_lightness(texture), space.blur) - space.centres["M"][1]
        towards.append(float(step[1].ravel() @ own.ravel()))
        turned += not np.array_equal(plain[1], step[1])
        plain_towards.append(float(plain[1].ravel() @ own.ravel()))
    # as for the shape: away along the clear directions, keyed along the others, so most keys (here 5 of
    # 8) and their mean point away; the keyed step as drawn points towards the patient about as often
    assert turned > 0 and np.mean(towards) < 0 and sum(t < 0 for t in towards) > len(towards) / 2
    assert np.mean(towards) < np.mean(plain_towards)


def test_the_away_threshold_sets_how_many_signs_the_patient_decides() -> None:
    """``spread_away_min``: along a direction where the patient lies further off the mean than this (σ),
    the step points away from them; elsewhere the key's sign stays. Above every coordinate the step is
    the keyed one as drawn; at 0 the patient sets every sign."""
    from anonymizer.engines.surrogate_spread import _away

    z = keyed_direction(spread_key(7), 12)
    coordinates = np.linspace(-2.0, 2.0, 12).astype(np.float32)
    assert np.array_equal(_away(z, coordinates, away_min=3.0), z)
    assert np.all(np.sign(_away(z, coordinates, away_min=0.0)) == -np.sign(coordinates))
    decided = [int((_away(z, coordinates, m) != z).sum()) for m in (0.0, 0.5, 1.0, 1.5)]
    assert decided == sorted(decided, reverse=True) and decided[0] > decided[-1]
    assert np.array_equal(np.abs(_away(z, coordinates, 1.0)), np.abs(z))  # only signs change


def test_the_texture_steps_soft_limit_is_a_setting() -> None:
    """``spread_texture_clip``: the texture step is soft-clipped to this many 8-bit levels (the module's 14
    by default); a lower limit keeps a strong step's shading patches fainter, the shape step unchanged."""
    from anonymizer.engines.surrogate_spread import CLIP, FaceSpace

    space = FaceSpace(
        np.ones((12, 68, 2), np.float32),
        np.full((12, 4, 4), 10.0, np.float32),
        {"": (np.zeros((68, 2), np.float32), np.zeros((4, 4), np.float32))},
        1.0,
    )
    shape, texture = space.deviation(3, 5.0)
    soft_shape, soft = space.deviation(3, 5.0, clip=7.0)
    assert 7.0 < np.abs(texture).max() < CLIP and np.abs(soft).max() < 7.0
    assert np.array_equal(shape, soft_shape) and np.array_equal(np.sign(texture), np.sign(soft))
    assert SurrogateSettings().spread_texture_clip == CLIP


def test_the_patients_texture_place_is_read_only_for_a_texture_step_pointed_away() -> None:
    """``coordinates`` without a lightness (issue-11t13: its band is two full-size blurs, ~30 ms per
    group) gives the same shape coordinates and no texture ones; with those the shape step is the one made
    with both, and the texture step stays the keyed one as drawn (what ``spread_texture_away`` off uses)."""
    from anonymizer.engines.surrogate_spread import FaceSpace

    rng = np.random.default_rng(5)
    reference = rng.uniform(0, 64, (68, 2)).astype(np.float32)
    space = FaceSpace(
        rng.normal(0, 1, (12, 68, 2)).astype(np.float32),
        rng.normal(0, 1, (12, 16, 16)).astype(np.float32),
        {"": (reference.astype(np.float64), np.zeros((16, 16)))},
        2.0,
    )
    landmarks = reference + rng.normal(0, 3, (68, 2)).astype(np.float32)
    light = rng.normal(128, 40, (16, 16)).astype(np.float32)
    shape_place, texture_place = space.coordinates(landmarks, light, reference, "F")
    alone, none = space.coordinates(landmarks, None, reference, "F")
    assert none is None and texture_place is not None and np.array_equal(alone, shape_place)
    both = space.deviation(5, 1.0, (shape_place, texture_place))
    shape_only = space.deviation(5, 1.0, (alone, None))
    assert np.array_equal(both[0], shape_only[0])  # the shape step as before
    assert np.array_equal(shape_only[1], space.deviation(5, 1.0)[1])  # the texture step as drawn
    assert not np.array_equal(both[1], shape_only[1])  # (which the texture's place would have turned)
