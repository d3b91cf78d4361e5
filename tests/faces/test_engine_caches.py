"""The synthesis' per-face and per-donor caches (issue-11t2) give the uncached values and never cross
patients: the Poisson blend's patient-side masks live on one face's peer base, a repelled donor's despeckled
lightness is keyed by the bank's photo, a rung's texture and target live for one group (issue-11t12)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines import surrogate_synthesis
from anonymizer.engines.surrogate import Strength, SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_colour import feature_colours, highlight_level, skin_coloured, skin_light
from anonymizer.engines.surrogate_identity import mix_lightness, mix_texture
from anonymizer.engines.surrogate_synthesis import _poisson
from anonymizer.engines.surrogate_texture import _anti_face, _skin_stats
from anonymizer.faces import pipeline
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.regions import interocular
from anonymizer.plans import Region
from tests.faces.conftest import TEST_IDS, load_rgb

RUNGS = (Strength(1.15, 1.6, 0.35, anti=0.5), Strength(1.4, 2.2, 0.6, anti=0.8))


def _aligned(engine: SurrogateEngine, name: str, preserve: tuple[Region, ...]):  # type: ignore[no-untyped-def]
    image = load_rgb(name)
    records = pipeline._align_all(
        [image], [detect_faces(image)], engine.crop_size, preserve, pipeline.PipelineSettings()
    )
    return records[0].aligned


def test_the_blend_cache_gives_the_uncached_blend_on_every_rung(bank_path: Path) -> None:
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    preserve = (Region.NOSE,)
    face = _aligned(engine, f"{TEST_IDS[0]}_03", preserve)
    sides: dict = {}
    synth = np.ascontiguousarray(face.image[:, ::-1])  # another face's pixels where the patient's are
    for shift in (0.0, 3.0, -2.0):  # rungs: other target shapes, the same patient crop
        target = face.landmarks + np.float32(shift)
        cached = _poisson(synth, face, preserve, target, None, sides)
        assert np.array_equal(cached, _poisson(synth, face, preserve, target))
    assert list(sides) == [(preserve, face.image.shape[0])]
    nothing = _poisson(synth, face, (), face.landmarks, None, sides)  # another kept set: its own entry
    assert np.array_equal(nothing, _poisson(synth, face, (), face.landmarks))
    assert len(sides) == 2


def test_a_patient_gets_the_same_face_whether_or_not_another_patient_came_first(bank_path: Path) -> None:
    settings = SurrogateSettings(ladder=RUNGS, donor_sets=1, k=5, k_min=3)
    preserve = (Region.NOSE,)
    fresh = SurrogateEngine(settings, load_bank(bank_path))
    patient = _aligned(fresh, f"{TEST_IDS[1]}_03", preserve)
    alone = fresh.anonymize([patient], 7, preserve)
    used = SurrogateEngine(settings, load_bank(bank_path))
    other = _aligned(used, f"{TEST_IDS[0]}_08", preserve)
    used.anonymize([other], 7, preserve)
    after = used.anonymize([patient], 7, preserve)
    assert all(np.array_equal(a, b) for a, b in zip(alone, after, strict=True))


def test_the_despeckled_donor_cache_is_per_photo_and_equals_the_uncached_anti_face(bank_path: Path) -> None:
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    first, second = engine.bank.photos[0], engine.bank.photos[-1]
    weight = engine._anti_weight()
    blur = 0.25 * interocular(engine.bank.reference)
    mix = engine._common_tone(first)
    for photo in (second, first, second):
        donor = engine._common_tone(photo)
        cached = _anti_face(mix, donor, weight, blur, engine._speckless(photo))
        assert np.array_equal(cached, _anti_face(mix, donor, weight, blur))
    assert not np.array_equal(engine._speckless(first), engine._speckless(second))


def test_a_replaced_peer_base_does_not_share_the_blend_cache(bank_path: Path) -> None:
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    face = _aligned(engine, f"{TEST_IDS[0]}_03", ())
    peers = [engine.bank.by_identity()[i] for i in sorted(engine.bank.by_identity())[:3]]
    base = engine._peer_base(face, peers, face.image.astype(np.float32))
    base.blend_sides[((), 1)] = None  # type: ignore[assignment]
    assert replace(base).blend_sides == {}
    assert engine._peer_base(face, peers, face.image.astype(np.float32)).blend_sides == {}


def test_the_cached_neutral_lightness_gives_the_uncached_identity_mix(bank_path: Path) -> None:
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    photos = engine.bank.photos[:4]
    base = engine._common_tone(engine.bank.photos[-1])
    coefficients = np.array([0.9, -0.4, 0.3, -0.8], np.float32)
    plain = mix_texture(base, np.stack([engine._common_tone(p) for p in photos]), coefficients, 0.6, 8.0)
    for _ in range(2):  # the first call fills the cache, the second reads it
        light = np.stack([engine._neutral_light(p) for p in photos])
        assert np.array_equal(mix_lightness(base, light, coefficients, 0.6, 8.0), plain)
    assert len(engine._neutral) == len(photos)


def test_a_rung_made_again_reuses_its_texture_and_the_crops_are_the_uncached_ones(
    monkeypatch: pytest.MonkeyPatch, bank_path: Path, pair: list
) -> None:
    """A group's rungs keep their texture and target (``_rung_base``): a preview's rung made in full and the
    chosen rung's finish read them back (fewer textures made than syntheses), the crops are those made with
    nothing kept, and nothing is kept once the group is done."""
    preserve = (Region.MOUTH,)
    settings = SurrogateSettings(preview_rungs="half")  # the mouth kept: previews, the eyes' finish

    def crops(keep: int) -> tuple[list[np.ndarray], int, int]:
        monkeypatch.setattr(surrogate_synthesis, "RUNG_BASES", keep)
        engine = SurrogateEngine(settings, load_bank(bank_path))
        records = pipeline._align_all(
            pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, preserve, pipeline.PipelineSettings()
        )
        counts = {"made": 0, "synthesized": 0}
        made, synthesize = SurrogateEngine._made_base, SurrogateEngine._synthesize

        def counted_made(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            counts["made"] += 1
            return made(self, *args, **kwargs)

        def counted_synthesize(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            counts["synthesized"] += 1
            return synthesize(self, *args, **kwargs)

        monkeypatch.setattr(SurrogateEngine, "_made_base", counted_made)  # the mouth-kept sibling's too
        monkeypatch.setattr(SurrogateEngine, "_synthesize", counted_synthesize)
        out = engine.anonymize([r.aligned for r in records], 7, preserve)
        sibling = engine._for_regions(preserve)
        assert engine._rung_bases is None and sibling._rung_bases is None
        monkeypatch.setattr(SurrogateEngine, "_made_base", made)
        monkeypatch.setattr(SurrogateEngine, "_synthesize", synthesize)
        return out, counts["made"], counts["synthesized"]

    kept, made, synthesized = crops(surrogate_synthesis.RUNG_BASES)
    fresh, made_fresh, synthesized_fresh = crops(0)  # every entry dropped as soon as it is kept
    assert synthesized == synthesized_fresh and made_fresh == synthesized_fresh
    assert made < synthesized
    assert all(np.array_equal(a, b) for a, b in zip(kept, fresh, strict=True))


def test_the_peer_base_statistics_are_each_functions_own(bank_path: Path) -> None:
    """The peer base makes the crop's Lab, skin and skin-coloured masks once for its statistics: each is
    what the function gives alone."""
    engine = SurrogateEngine(SurrogateSettings(), load_bank(bank_path))
    face = _aligned(engine, f"{TEST_IDS[0]}_03", ())
    peers = [engine.bank.by_identity()[i] for i in sorted(engine.bank.by_identity())[:3]]
    base = engine._peer_base(face, peers, face.image.astype(np.float32))
    image, landmarks = face.image, face.landmarks
    light = skin_light(image, landmarks)
    assert light is not None and base.light is not None and np.array_equal(base.light, light)
    assert base.skin is not None and all(
        np.array_equal(a, b) for a, b in zip(base.skin, _skin_stats(image, landmarks) or (), strict=True)
    )
    features = zip(base.features or [], feature_colours(image, landmarks), strict=True)
    assert base.features is not None and all(
        (a is None and b is None) or np.array_equal(a, b) for a, b in features
    )
    assert base.highlight == highlight_level(image, landmarks, light)
    assert base.coloured is not None and np.array_equal(base.coloured, skin_coloured(image, landmarks))
