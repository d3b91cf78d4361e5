"""Rungs judged on a preview (issue-11t11, settings.preview_rungs): a rung whose cheaper synthesis clearly
fails is not made in full; a rung that may pass, and the rung the ladder returns, always are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anonymizer.donors import load_bank
from anonymizer.engines import surrogate_ladder
from anonymizer.engines.surrogate import SurrogateEngine, SurrogateSettings, _Check
from anonymizer.engines.surrogate_donors import DonorChoice
from anonymizer.engines.surrogate_ladder import _Common
from anonymizer.faces.detect import detect_faces
from anonymizer.faces.pipeline import PipelineSettings, _align_all
from anonymizer.plans import Region
from tests.faces.ladder_fakes import FarPatient as _Face
from tests.faces.ladder_fakes import plain_engine
from tests.faces.ladder_fakes import unit as _unit

RUNGS = 4
PREVIEW = "detail,relight,highlights,features,poisson"


def _engine(
    monkeypatch: pytest.MonkeyPatch, full: list[float], cheap: list[float], **settings: object
) -> tuple[SurrogateEngine, list[tuple[int, bool]]]:
    """An engine whose rung n lies ``full[n]`` from the patient in full and ``cheap[n]`` in its preview
    (every other test passes); returns it and the (rung, preview) of each synthesis made."""
    engine = plain_engine(monkeypatch, RUNGS, **settings)
    made: list[tuple[int, bool]] = []

    def synthesize(face, ingredients, tris, preserve, strength, repel, finish=False, skip=frozenset()):
        level = int(strength.texture)
        made.append((level, bool(skip)))
        return np.array([[level, bool(skip)]], float), np.zeros((68, 2))

    def distinct(crop, target, face, donor_descs, reference, others=()):
        level, preview = int(crop[0, 0]), bool(crop[0, 1])
        away = cheap[level] if preview else full[level]
        return _Check(away, None, 10, 10, _unit(level + 10 * preview))

    monkeypatch.setattr(engine, "_synthesize", synthesize)
    monkeypatch.setattr(engine, "_distinct", distinct)
    return engine, made


def _climb(engine: SurrogateEngine) -> surrogate_ladder._Attempt:
    common = _Common(None, np.zeros((1, 128)), [], [None])  # type: ignore[arg-type]
    return engine._climb([_Face()], DonorChoice(("d1", "d2"), 1), common, ())  # type: ignore[list-item]


def test_off_by_default_every_rung_is_made_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SurrogateSettings().preview_rungs == ""
    engine, made = _engine(monkeypatch, [0.3, 0.3, 0.9, 0.9], [0.3, 0.3, 0.9, 0.9])
    chosen = _climb(engine)
    assert chosen.passed and chosen.level == 2
    assert made == [(0, False), (1, False), (2, False)]


def test_clearly_failing_previews_stand_for_their_rungs(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, made = _engine(monkeypatch, [0.3, 0.3, 0.9, 0.9], [0.3, 0.3, 0.9, 0.9], preview_rungs=PREVIEW)
    chosen = _climb(engine)
    assert chosen.passed and chosen.level == 2 and not chosen.preview
    assert made == [(0, True), (1, True), (2, True), (2, False)]  # only the passing rung made in full
    assert np.allclose(chosen.outs[0], _unit(2))  # the full rung's crops and reading, not the preview's


def test_a_preview_within_the_margin_is_judged_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    limit = SurrogateSettings().self_check_distance
    cheap = [limit - 0.01, 0.3, 0.3, 0.3]  # rung 0's preview fails, but by less than preview_margin
    engine, made = _engine(monkeypatch, [0.9, 0.9, 0.9, 0.9], cheap, preview_rungs=PREVIEW)
    chosen = _climb(engine)
    assert chosen.passed and chosen.level == 0
    assert made == [(0, True), (0, False)]
    assert not engine._near_pass([_Check(limit - 0.05, None, 10, 10)], _Common(None, None, [], []))  # type: ignore[arg-type]
    assert not engine._near_pass([_Check(0.9, "d1", 10, 10)], _Common(None, None, [], []))  # type: ignore[arg-type]


def test_a_preview_that_passes_but_fails_in_full_climbs_on(monkeypatch: pytest.MonkeyPatch) -> None:
    engine, made = _engine(monkeypatch, [0.3, 0.9, 0.9, 0.9], [0.9, 0.3, 0.9, 0.9], preview_rungs=PREVIEW)
    chosen = _climb(engine)
    assert chosen.passed and chosen.level == 2  # rung 1's clearly failing preview stood for it
    assert made == [(0, True), (0, False), (1, True), (2, True), (2, False)]


def test_when_no_rung_passes_the_rung_returned_is_made_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    far = [0.30, 0.40, 0.35, 0.32]  # rung 1 is the farthest: the rung most likely to verify
    engine, made = _engine(monkeypatch, far, far, preview_rungs=PREVIEW)
    chosen = _climb(engine)
    assert not chosen.passed and chosen.level == 1 and not chosen.preview
    assert made == [(0, True), (1, True), (2, True), (3, True), (1, False)]
    assert np.allclose(chosen.crops[0], [[1, 0]]) and np.allclose(chosen.outs[0], _unit(1))


def test_after_a_near_rung_the_next_is_made_in_full_without_a_preview(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = SurrogateSettings().self_check_distance
    near = limit - 0.01  # fails, but within preview_margin: not a clear failure
    engine, made = _engine(monkeypatch, [0.3, near, 0.3, 0.9], [0.3, near, 0.3, 0.9], preview_rungs=PREVIEW)
    chosen = _climb(engine)
    assert chosen.passed and chosen.level == 3
    # rung 1's preview was near, so it was made in full, and rung 2 (after a near rung) had no preview;
    # rung 2 failed clearly in full, so rung 3 was previewed again
    assert made == [(0, True), (1, True), (1, False), (2, False), (3, True), (3, False)]


def test_half_size_points_land_on_the_pixels_inter_area_makes() -> None:
    from anonymizer.engines.surrogate_synthesis import _half_points, _halve

    image = np.zeros((16, 16), np.float32)
    image[6:8, 10:12] = 1.0  # a 2x2 block centred on (x, y) = (10.5, 6.5)
    small = _halve(image)
    assert small is not None and small.shape == (8, 8)
    y, x = np.unravel_index(int(small.argmax()), small.shape)
    assert np.allclose(_half_points(np.array([[10.5, 6.5]])), [[x, y]])
    mask = np.zeros((16, 16), bool)
    mask[:, :9] = True
    halved = _halve(mask)
    assert halved is not None and halved.dtype == bool and halved[:, :4].all() and not halved[:, 5:].any()


def test_a_half_size_preview_reads_as_its_full_rung(
    monkeypatch: pytest.MonkeyPatch, bank_path: Path, pair: list
) -> None:
    """On the session bank, the mouth kept: every half-size preview's distance to the patient lies within
    0.04 of its full rung's (on the timing photo: sd 0.007, max 0.024), and the crops returned are full
    size."""
    bank = load_bank(bank_path)
    engine = SurrogateEngine(SurrogateSettings(preview_rungs="half"), bank)
    records = _align_all(pair, [detect_faces(p)[:1] for p in pair], engine.crop_size, (), PipelineSettings())
    faces = [r.aligned for r in records]
    readings: list[tuple[float, float]] = []
    rung = SurrogateEngine._rung

    def both(self, faces, recipe, common, preserve, skip=frozenset()):  # type: ignore[no-untyped-def]
        made = rung(self, faces, recipe, common, preserve, skip)
        if skip:
            assert made[0][0][0].shape[0] == engine.crop_size // 2
            full = rung(self, faces, recipe, common, preserve)
            readings.extend((a.away, b.away) for a, b in zip(made[1], full[1], strict=True))
        return made

    monkeypatch.setattr(SurrogateEngine, "_rung", both)  # the mouth-kept sibling engine's too
    crops = engine.anonymize(faces, 7, (Region.MOUTH,))
    assert readings and max(abs(a - b) for a, b in readings) < 0.04
    assert all(c.shape[:2] == (engine.crop_size, engine.crop_size) for c in crops)
