"""The engine's own sex reading (surrogate_sex.SexProbe, fitted on the donor bank alone) and the spread's sex
guard (surrogate_spread.sex_direction): a keyed step in the bank's face space must not carry a face across
the sexes, and the probe must read faces it was not fitted on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_donors import apparent_sex
from anonymizer.engines.surrogate_sex import SexProbe
from anonymizer.engines.surrogate_spread import sex_direction
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.verify import descriptor


def test_the_probe_reads_the_banks_held_out_identities(wide_donor_bank: Path) -> None:
    """Leave-identity-out on a 20-identity bank: fitted without an identity, the probe calls its sex."""
    bank = load_bank(wide_donor_bank)
    groups = bank.by_identity()
    right, centroid_right = [], []
    for identity, photos in groups.items():
        rest = [p for other, ps in groups.items() if other != identity for p in ps]
        probe = SexProbe.fit(rest)
        assert probe is not None
        right += [probe.call(p.descriptor) == p.sex for p in photos if p.sex]
        without = type(bank)(bank.reference, rest, bank.crop_size)
        centroid_right += [apparent_sex(p.descriptor, without) == p.sex for p in photos if p.sex]
    assert len(right) >= 18
    assert np.mean(right) >= 0.9
    assert np.mean(right) >= np.mean(centroid_right)  # no worse than the centroids it replaces


def test_the_probe_reads_patients_outside_the_bank(wide_donor_bank: Path, pair: list[np.ndarray]) -> None:
    """Test identity 017 (a man, never in a bank built here): both photos read male, and the engine's
    profile takes the probe's call when the header has no sex."""
    engine = SurrogateEngine(SurrogateSettings(sex_reader="probe"), load_bank(wide_donor_bank))
    for image in pair:
        face = detect_faces(image)[0]
        assert engine._read_sex(descriptor(image, face.landmarks), checking=False) == "M"
    assert engine._profile_sex_reader() is not None
    centroids = SurrogateSettings(sex_reader="centroids")
    assert SurrogateEngine(centroids, engine.bank)._profile_sex_reader() is None


def test_a_margin_leaves_borderline_outputs_unread() -> None:
    probe = SexProbe(np.ones(128) / 128, 0.0)
    assert probe.call(np.full(128, 0.1)) == "M" and probe.call(np.full(128, -0.1)) == "F"
    assert probe.call(np.full(128, 0.1), margin=0.2) == "?"  # a self-check then rejects the rung


def test_the_guarded_spread_has_no_step_along_the_sex_probes(wide_donor_bank: Path) -> None:
    """The texture spread (5 × one person) turned two London-set women into men: with the guard on, neither
    the shape nor the texture step has a component along the bank's sex probes, whatever the key."""
    bank = load_bank(wide_donor_bank)
    guarded = SurrogateEngine(SurrogateSettings(spread_texture=5.0, spread_sex_guard=True), bank)
    plain = SurrogateEngine(SurrogateSettings(spread_texture=5.0, spread_sex_guard=False), bank)
    along_guarded, along_plain = [], []
    for seed in range(12):
        shape, texture = guarded._spread(seed)  # type: ignore[misc]
        space = guarded._space
        assert space is not None and space.sex_directions is not None
        axis_shape, axis_texture = space.sex_directions
        plain_texture = plain._spread(seed)[1]  # type: ignore[misc]
        assert abs(float((shape * axis_shape).sum())) < 1e-4 * np.linalg.norm(shape)
        along_guarded.append(abs(float((texture * axis_texture).sum())) / np.linalg.norm(texture))
        along_plain.append(abs(float((plain_texture * axis_texture).sum())) / np.linalg.norm(plain_texture))
    assert max(along_guarded) < 1e-4 < 0.05 < max(along_plain)  # the plain step does cross


def test_sex_direction_reads_new_samples_of_each_sex() -> None:
    """Sexes split along one axis among noise: the direction (fitted on 10 + 10) calls new samples right."""
    rng = np.random.default_rng(3)

    def draw(n: int, sign: float) -> np.ndarray:
        rows = rng.standard_normal((n, 6)) * 0.3
        rows[:, 1] += sign
        return rows

    axis = sex_direction(np.vstack([draw(10, -1.0), draw(10, 1.0)]), ["F"] * 10 + ["M"] * 10)
    assert axis is not None and np.isclose(np.linalg.norm(axis), 1.0)
    right = np.concatenate([draw(50, -1.0) @ axis < 0, draw(50, 1.0) @ axis > 0])
    assert right.mean() >= 0.95
    assert sex_direction(draw(10, -1.0), ["F"] * 10) is None  # one sex: no direction


def test_after_a_sex_miss_later_sets_scale_only_the_texture_step(wide_donor_bank: Path) -> None:
    """The keyed step is the same for every donor set of a patient: once a set reads as the other sex, the
    texture step (the part that carried two London-set women across) is scaled, the shape step kept."""
    from anonymizer.engines.surrogate_ladder import _Common

    shape, texture = np.ones((68, 2), np.float32), np.full((4, 4), 2.0, np.float32)
    common = _Common(np.zeros((1, 3), np.int32), np.zeros((1, 128)), [], [], ("F", 30.0), (shape, texture))
    bank = load_bank(wide_donor_bank)
    dropped = SurrogateEngine(SurrogateSettings(spread_texture_after_sex_miss=0.0), bank)._sex_missed(common)
    assert dropped.spread is not None
    assert np.array_equal(dropped.spread[0], shape) and not dropped.spread[1].any()
    kept = SurrogateEngine(SurrogateSettings(), bank)._sex_missed(common)
    assert kept is common  # the default (1.0) leaves the step as it is


def test_the_guarded_anti_face_has_no_step_along_the_sex_direction(wide_donor_bank: Path) -> None:
    """The anti-face flips a patient's deviation from the centre: for a feminine patient that points at men.
    With ``anti_sex_guard`` its component along the bank's texture sex direction is gone."""
    from anonymizer.engines.surrogate_texture import _anti_face

    bank = load_bank(wide_donor_bank)
    engine = SurrogateEngine(SurrogateSettings(anti_sex_guard=True), bank)
    plain = SurrogateEngine(SurrogateSettings(anti_sex_guard=False), bank)
    woman = next(p for p in bank.photos if p.sex == "F")
    centre = np.mean([engine._common_tone(p) for p in bank.photos], axis=0)
    blur = 0.25 * float(np.linalg.norm(bank.reference[36:42].mean(0) - bank.reference[42:48].mean(0)))
    anti = _anti_face(centre, engine._common_tone(woman), engine._anti_weight(), blur)
    space = engine._face_space()
    assert space.sex_directions is not None
    axis = space.sex_directions[1]
    guarded = engine._sexless(anti)
    assert abs(float((guarded[..., 0] * axis).sum())) < 1e-3 * np.linalg.norm(guarded[..., 0])
    assert plain._sexless(anti) is anti  # off: as it was
    assert abs(float((anti[..., 0] * axis).sum())) > 1e-2 * np.linalg.norm(anti[..., 0])  # it had one
