"""Distinct patients (issue-11s): the self-check's distance from the demographic centre that donor mixes
crowd at (``self_check_centre_distance``) and the per-rung anti-face rescue of the sex (``sex_miss_anti``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anonymizer.donors import load_bank
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings
from anonymizer.engines.surrogate_ladder import _Check, _Common


def _common(sex: str) -> _Common:
    return _Common(np.zeros((0, 3), int), np.zeros((0, 128)), [], [], (sex, 40.0))


def test_an_output_at_the_banks_centre_of_its_sex_does_not_pass(wide_donor_bank: Path) -> None:
    """Two patients whose outputs both sit at their sex's mean descriptor are one person: with the setting
    such a rung fails the self-check; a rung as far from the centre as a real face passes; off (0), the
    centre passes as before."""
    bank = load_bank(wide_donor_bank)
    men = np.mean([p.descriptor for p in bank.photos if p.sex == "M"], axis=0)
    offset = np.random.default_rng(0).standard_normal(128)
    far = men + 0.6 * offset / np.linalg.norm(offset)

    def check(out: np.ndarray) -> _Check:
        return _Check(0.8, None, 5, 10, out.astype(np.float32), "M")

    strict = SurrogateEngine(SurrogateSettings(self_check_centre_distance=0.5), bank)
    assert not strict._judge([check(men)], _common("M"))[0]
    assert strict._judge([check(far)], _common("M"))[0]
    assert not strict._judge([check(far), check(men)], _common("M"))[0]  # every output of the group
    off = SurrogateSettings(self_check_centre_distance=0.0)
    assert SurrogateEngine(off, bank)._judge([check(men)], _common("M"))[0]


def test_a_rung_remade_for_the_sex_is_dropped_when_it_does_not_keep_the_sex(
    wide_donor_bank: Path, pair: list[np.ndarray]
) -> None:
    """``sex_miss_anti``: a rung read as the other sex (here: every output, read with a margin no face
    clears) is made again with the anti-face scaled; a remade rung that still misses is dropped, so the
    outputs are those of the engine without the rescue, bit for bit. A rung that keeps the sex is never
    remade."""
    from dataclasses import replace

    from anonymizer.engines.surrogate import Strength
    from anonymizer.faces.detect import detect_faces
    from anonymizer.faces.pipeline import PipelineSettings, _align_all

    bank = load_bank(wide_donor_bank)
    rung = Strength(1.15, 1.6, 0.35, 0.0, 0.5)
    plain = SurrogateSettings(
        ladder=(rung,),
        donor_sets=1,
        sex_reader="centroids",
        self_check_sex_margin=100.0,
        sex_miss_anti=1.0,
        nothing_kept=(),  # the engine itself, not its nothing-kept sibling
    )
    engine = SurrogateEngine(replace(plain, sex_miss_anti=0.0), bank)
    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, (), PipelineSettings())
    faces = [r.aligned for r in records]
    tried: list[tuple[Strength, bool]] = []
    original = engine._sex_rescue

    def watched(*args: object) -> object:
        result = original(*args)  # type: ignore[arg-type]
        tried.append((args[1].strength, result is not None))  # type: ignore[arg-type]
        return result

    engine._sex_rescue = watched  # type: ignore[method-assign]
    out = engine.anonymize(faces, 7, ())
    assert tried == [(rung, False)]  # tried once (one rung, one set) and dropped: still unread
    without = SurrogateEngine(plain, bank).anonymize(faces, 7, ())
    assert all(np.array_equal(a, b) for a, b in zip(out, without, strict=True))
    kept = SurrogateEngine(replace(plain, self_check_sex_margin=0.0, sex_miss_anti=0.0), bank)
    kept._sex_rescue = watched  # type: ignore[method-assign]
    tried.clear()
    kept.anonymize(faces, 7, ())
    assert tried == []  # read as his sex: nothing to remake


def test_with_the_nose_or_eyes_kept_the_engine_uses_the_region_kept_settings(
    wide_donor_bank: Path, pair: list[np.ndarray]
) -> None:
    """``region_kept``: the identity levers act with nothing or the mouth kept; with the nose or the eyes
    kept a sibling engine on the same bank uses the given values, so those outputs are the ones of an
    engine built with them, bit for bit."""
    from dataclasses import replace

    from anonymizer.engines.surrogate import Strength
    from anonymizer.faces.detect import detect_faces
    from anonymizer.faces.pipeline import PipelineSettings, _align_all
    from anonymizer.plans import Region

    bank = load_bank(wide_donor_bank)
    base = SurrogateSettings(ladder=(Strength(1.15, 1.6, 0.35, 0.0, 0.5),), donor_sets=1, region_kept=())
    base = replace(base, eyes_kept=(), nose_kept=(), nothing_kept=(), mouth_kept=())  # one sibling
    levers = replace(base, spread_texture=5.0, region_kept=(("spread_texture", 0.0),))
    engine = SurrogateEngine(levers, bank)
    assert engine._for_regions(()) is engine and engine._for_regions((Region.MOUTH,)) is engine
    sibling = engine._for_regions((Region.NOSE,))
    assert sibling is engine._for_regions((Region.EYES,)) is not engine  # made once
    assert sibling.settings == replace(levers, spread_texture=0.0, region_kept=()) and sibling.bank is bank
    records = _align_all(
        pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, (Region.NOSE,), PipelineSettings()
    )
    faces = [r.aligned for r in records]
    kept = engine.anonymize(faces, 5, (Region.NOSE,))
    reference = SurrogateEngine(base, bank)
    plain = reference.anonymize(faces, 5, (Region.NOSE,))
    assert all(np.array_equal(a, b) for a, b in zip(kept, plain, strict=True))
    assert engine.last_level == reference.last_level and engine.trace  # the sibling's record is the engine's
    engine.settings = replace(levers, region_kept=(("spread_texture", 1.0),))
    assert engine._for_regions((Region.NOSE,)).settings.spread_texture == 1.0  # new settings, new sibling


def test_nose_kept_and_eyes_kept_apply_only_with_their_region(wide_donor_bank: Path) -> None:
    """``nose_kept`` / ``eyes_kept`` layer on ``region_kept`` for their own region only, so tuning one kept
    region leaves the other's engine (and its outputs) as they were."""
    from anonymizer.plans import Region

    settings = SurrogateSettings(
        region_kept=(("spread_texture", 0.0),),
        mouth_kept=(),
        nose_kept=(("spread_texture", 2.0),),
        eyes_kept=(("sex_probe_margin", 0.7),),
    )
    engine = SurrogateEngine(settings, load_bank(wide_donor_bank))
    nose, eyes = engine._for_regions((Region.NOSE,)), engine._for_regions((Region.EYES,))
    assert engine._for_regions((Region.MOUTH,)) is engine and nose is not eyes
    assert nose is engine._for_regions((Region.NOSE, Region.MOUTH))  # one sibling per set of values
    assert (nose.settings.spread_texture, nose.settings.sex_probe_margin) == (2.0, settings.sex_probe_margin)
    assert (eyes.settings.spread_texture, eyes.settings.sex_probe_margin) == (0.0, 0.7)
    assert nose.settings.nose_kept == () and eyes.settings.region_kept == ()


def test_nothing_kept_and_mouth_kept_apply_only_to_their_setting(wide_donor_bank: Path) -> None:
    """``nothing_kept`` acts only with no region kept and ``mouth_kept`` only with the mouth alone kept, so
    each setting can be tuned alone."""
    from anonymizer.plans import Region

    settings = SurrogateSettings(
        region_kept=(("spread_texture", 0.0),),
        nose_kept=(),
        nothing_kept=(("spread_texture", 3.0),),
        mouth_kept=(("spread_texture", 4.0), ("sex_probe_margin", 0.9)),
    )
    engine = SurrogateEngine(settings, load_bank(wide_donor_bank))
    nothing, mouth = engine._for_regions(()), engine._for_regions((Region.MOUTH,))
    assert nothing is not engine and mouth is not engine and nothing is not mouth
    margin = settings.sex_probe_margin
    assert (nothing.settings.spread_texture, nothing.settings.sex_probe_margin) == (3.0, margin)
    assert (mouth.settings.spread_texture, mouth.settings.sex_probe_margin) == (4.0, 0.9)
    assert nothing.settings.nothing_kept == mouth.settings.mouth_kept == ()  # a sibling has no siblings
    both = engine._for_regions((Region.MOUTH, Region.NOSE))
    assert both is engine._for_regions((Region.NOSE,))  # with the nose kept too, mouth_kept does not apply
    assert engine._for_regions((Region.NOSE,)).settings.sex_probe_margin == margin
